"""The export-time rewrite of 3x3x3 convolutions must be exact and touch only what it can."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gaitid.model.layers.conv3d_as_2d import TimeStackedConv3d, is_replaceable, stack_time_in_conv3d
from gaitid.model.registry import create_model


@pytest.mark.parametrize("frames", [1, 2, 7])
def test_time_stacked_conv_equals_conv3d(frames: int) -> None:
    torch.manual_seed(frames)
    conv = nn.Conv3d(3, 5, 3, padding=1, bias=False)
    x = torch.randn(2, 3, frames, 9, 6)
    with torch.no_grad():
        torch.testing.assert_close(TimeStackedConv3d(conv)(x), conv(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv3d(2, 2, 3, padding=1, bias=True),
        nn.Conv3d(2, 2, (1, 3, 3), padding=(0, 1, 1), bias=False),
        nn.Conv3d(2, 2, 3, padding=1, stride=2, bias=False),
        nn.Conv3d(2, 2, 3, padding=1, bias=False, padding_mode="replicate"),
    ],
)
def test_unsupported_convs_are_refused_and_left_alone(conv: nn.Conv3d) -> None:
    assert not is_replaceable(conv)
    with pytest.raises(ValueError, match="cannot rewrite"):
        TimeStackedConv3d(conv)
    holder = nn.Sequential(conv)
    assert stack_time_in_conv3d(holder) == 0
    assert holder[0] is conv


def test_rewritten_model_gives_the_same_outputs_on_a_padded_batch() -> None:
    torch.manual_seed(0)
    model = create_model("tiny").eval()
    rewritten = copy.deepcopy(model)
    assert stack_time_in_conv3d(rewritten) > 0
    silhouettes = torch.rand(3, 9, 64, 44)
    lengths = torch.tensor([9, 4, 1])
    with torch.no_grad():
        expected, got = model(silhouettes, lengths), rewritten(silhouettes, lengths)
    torch.testing.assert_close(got.embedding, expected.embedding, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.part_features, expected.part_features, atol=1e-5, rtol=1e-5)
