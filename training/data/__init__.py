"""Torch-free dataset readers and writers (numpy only).

- :mod:`gaitid.training.data.opengait`: the OpenGait layout
``ROOT/<subject>/<cond>/<view>/<view>.pkl``
  with uint8 ``(T, 64, 64)`` walks, and its JSON partition file.
- :mod:`gaitid.training.data.casia_raw`: raw CASIA-B style folders of PNG silhouettes of any size.
- :mod:`gaitid.training.data.pretreat`: raw layout -> OpenGait layout (``gaitid pretreat``).
"""
