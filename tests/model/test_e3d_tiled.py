"""The tiled-frames export of the backbone must compute exactly what E3D computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES
from gaitid.model.e3d_tiled import TiledE3D, frame_pitch
from gaitid.model.export import export_onnx
from gaitid.model.layers.masking import length_mask
from gaitid.model.registry import create_model


def test_frame_pitch_keeps_a_zero_row_after_every_pooling() -> None:
    assert frame_pitch(64, 2) == 68  # 68 -> 34 -> 17: 64, 32, 16 rows of frame
    assert frame_pitch(64, 0) == 65
    assert frame_pitch(64, 1) == 66
    for height, pools in ((64, 3), (30, 1), (7, 0)):
        pitch = frame_pitch(height, pools)
        assert pitch % 2**pools == 0 and pitch // 2**pools > height // 2**pools


@pytest.mark.parametrize("variant", ["tiny", "lite"])
def test_tiled_backbone_equals_e3d_on_a_padded_batch(variant: str) -> None:
    torch.manual_seed(0)
    model = create_model(variant).eval()
    silhouettes = (torch.rand(3, 7, 64, 44) > 0.5).float()
    mask = length_mask(torch.tensor([7, 3, 1]), 7)
    with torch.no_grad():
        expected = model.backbone(silhouettes, mask)
        got = TiledE3D(model.backbone)(silhouettes, mask)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_conv_it_cannot_rewrite_is_refused() -> None:
    model = create_model("tiny")
    model.backbone.layers[0] = nn.Conv3d(1, 2, 3, padding=1, bias=True)
    with pytest.raises(ValueError, match="cannot rewrite"):
        TiledE3D(model.backbone)


def test_tiled_export_runs_in_onnx_runtime_and_matches_eager(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    path = export_onnx(
        model,
        tmp_path / "tiled.onnx",
        metadata={"variant": "tiny", "version": "test", "training_data": "none"},
        backbone="tiled",
    )
    silhouettes = np.random.default_rng(0).random((2, 9, 64, 44), dtype=np.float32)
    lengths = np.array([9, 5], np.int64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths})
    with torch.no_grad():
        expected = model(torch.from_numpy(silhouettes), torch.from_numpy(lengths)).embedding
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="backbone layout"):
        export_onnx(model, tmp_path / "x.onnx", metadata={}, backbone="sideways")  # type: ignore[arg-type]
