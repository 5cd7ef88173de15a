"""A trained checkpoint exports to the service's ONNX contract with the same embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from gaitid.cli import app
from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES, OUTPUT_EMBEDDING, batch_sequences


def test_trained_checkpoint_exports_and_matches_torch(
    uninterrupted: Path, tmp_path: Path, rng
) -> None:
    import onnxruntime as ort
    import torch

    from model.export import load_checkpoint_model

    ckpt = uninterrupted / "checkpoints" / "last.pt"
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", str(ckpt), "--out", str(out)])
    assert result.exit_code == 0, result.output

    walks = [(rng.random((t, 64, 44)) > 0.5).astype(np.uint8) * 255 for t in (9, 14, 30)]
    silhouettes, lengths = batch_sequences(walks)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (onnx_emb,) = session.run(
        [OUTPUT_EMBEDDING], {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}
    )
    model, state = load_checkpoint_model(ckpt)
    with torch.inference_mode():
        torch_emb = model(
            torch.from_numpy(silhouettes), torch.from_numpy(lengths)
        ).embedding.numpy()
    np.testing.assert_allclose(onnx_emb, torch_emb, atol=1e-4)
    meta = {p.key: p.value for p in __import__("onnx").load(str(out)).metadata_props}
    assert meta["variant"] == "tiny" and "001..002" in meta["training_data"]
    assert state["meta"]["iteration"] == 4
