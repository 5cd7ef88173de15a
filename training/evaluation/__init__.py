"""Evaluation of trained gait networks: pure metrics, the field's protocols, and reports.

``metrics`` and ``protocols`` are numpy only; ``extract`` imports torch / onnxruntime lazily.
"""
