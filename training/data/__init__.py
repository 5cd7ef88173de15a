"""Torch-free dataset readers and writers (numpy only).

- :mod:`training.data.opengait`: the OpenGait layout ``ROOT/<subject>/<cond>/<view>/<view>.pkl``
  with uint8 ``(T, 64, 64)`` walks, and its JSON partition file.
- :mod:`training.data.casia_raw`: raw CASIA-B style folders of PNG silhouettes of any size.
- :mod:`training.data.pretreat`: raw layout -> OpenGait layout (``gaitid pretreat``).
"""
