"""A trained checkpoint exports (`gaitid export`) to the ONNX contract, same embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES, OUTPUT_EMBEDDING, batch_sequences


def test_trained_checkpoint_exports_and_matches_torch(
    uninterrupted: Path, exported: Path, rng: np.random.Generator
) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    from model.export import load_checkpoint_model

    walks = [(rng.random((t, 64, 44)) > 0.5).astype(np.uint8) * 255 for t in (9, 14, 30)]
    silhouettes, lengths = batch_sequences(walks)
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (onnx_emb,) = session.run(
        [OUTPUT_EMBEDDING], {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}
    )
    model, state = load_checkpoint_model(uninterrupted / "checkpoints" / "last.pt")
    with torch.inference_mode():
        out = model(torch.from_numpy(silhouettes), torch.from_numpy(lengths))
    np.testing.assert_allclose(onnx_emb, out.embedding.numpy(), atol=1e-4)
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert meta["variant"] == "tiny" and "001..002" in meta["training_data"]
    assert meta["iteration"] == "4" and state["meta"]["iteration"] == 4
