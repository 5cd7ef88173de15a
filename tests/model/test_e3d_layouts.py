"""The export-time layouts of the backbone (frame-major, tiled) must compute exactly what E3D
computes, alone and in a padded batch, and export to graphs ONNX Runtime runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES
from gaitid.model.e3d_frames import FrameMajorE3D
from gaitid.model.e3d_tiled import TiledE3D, frame_pitch
from gaitid.model.export import export_onnx
from gaitid.model.layers.conv3d_as_2d import stack_frames
from gaitid.model.layers.masking import length_mask
from gaitid.model.registry import create_model


def test_frame_pitch_keeps_a_zero_row_after_every_pooling() -> None:
    assert frame_pitch(64, 2) == 68  # 68 -> 34 -> 17: 64, 32, 16 rows of frame
    assert frame_pitch(64, 0) == 65
    assert frame_pitch(64, 1) == 66
    for height, pools in ((64, 3), (30, 1), (7, 0)):
        pitch = frame_pitch(height, pools)
        assert pitch % 2**pools == 0 and pitch // 2**pools > height // 2**pools


def test_stack_frames_puts_each_frame_beside_its_neighbours() -> None:
    x = torch.arange(1, 4, dtype=torch.float32).reshape(1, 3, 1, 1, 1)  # frames 1, 2, 3
    stacked = stack_frames(x)[0, :, :, 0, 0]
    assert stacked.tolist() == [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [2.0, 3.0, 0.0]]


LAYOUTS = [FrameMajorE3D, TiledE3D]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("variant", ["tiny", "lite", "paper"])
def test_backbone_layout_equals_e3d_on_a_padded_batch(variant: str, layout: type) -> None:
    torch.manual_seed(0)
    model = create_model(variant).eval()
    silhouettes = (torch.rand(3, 5, 64, 44) > 0.5).float()
    mask = length_mask(torch.tensor([5, 3, 1]), 5)
    with torch.no_grad():
        expected = model.backbone(silhouettes, mask)
        got = layout(model.backbone)(silhouettes, mask)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_conv_it_cannot_rewrite_is_refused(layout: type) -> None:
    model = create_model("tiny")
    model.backbone.layers[0] = nn.Conv3d(1, 2, 3, padding=1, bias=True)
    with pytest.raises(ValueError, match="cannot rewrite"):
        layout(model.backbone)


@pytest.mark.parametrize("backbone", ["frame-major", "tiled"])
def test_layout_export_runs_in_onnx_runtime_and_matches_eager(
    tmp_path: Path, backbone: str
) -> None:
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    path = export_onnx(
        model,
        tmp_path / f"{backbone}.onnx",
        metadata={"variant": "tiny", "version": "test", "training_data": "none"},
        backbone=backbone,  # type: ignore[arg-type]
        shifts="none",  # the layout against the eager network's one pass
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
