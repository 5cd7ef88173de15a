"""The shipped PyTorch weights: loadable for fine-tuning, the same network as the ONNX model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES, OUTPUT_EMBEDDING, batch_sequences
from gaitid.service.config import SHIPPED_MODEL
from tests.utils.nested import strings_in

WEIGHTS = SHIPPED_MODEL.with_suffix(".pt")


def test_shipped_weights_match_the_shipped_onnx_model() -> None:
    import onnxruntime as ort
    import torch

    from gaitid.model.export import load_checkpoint_model

    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 50 * 1024 * 1024
    model, state = load_checkpoint_model(WEIGHTS)
    assert "optimizer" not in state and "rng" not in state
    assert not [s for s in strings_in(state) if Path(s).is_absolute()]
    assert model.embedding_head.is_fitted and state["num_classes"] == 74
    rng = np.random.default_rng(1)
    walks = [(rng.random((t, 64, 44)) > 0.5).astype(np.uint8) * 255 for t in (12, 33)]
    silhouettes, lengths = batch_sequences(walks)
    session = ort.InferenceSession(str(SHIPPED_MODEL), providers=["CPUExecutionProvider"])
    (onnx_emb,) = session.run(
        [OUTPUT_EMBEDDING], {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}
    )
    with torch.inference_mode():
        out = model(torch.from_numpy(silhouettes), torch.from_numpy(lengths))
    np.testing.assert_allclose(onnx_emb, out.embedding.numpy(), atol=1e-4)
