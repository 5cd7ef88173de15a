"""Test-time shift ensembling: the shifts, the average, the named sets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaitid.contract import (
    TEST_TIME_SHIFT_OFFSETS,
    TEST_TIME_SHIFT_SETS,
    ContractError,
    shift_offsets,
)
from gaitid.model.test_time import ensemble_embedding, shift_frames


class _FirstPixels(nn.Module):
    """A stand-in network whose unit 'embedding' is the first frame's top-left 2x2 pixels: it
    sees every shift."""

    def forward(self, silhouettes: Tensor, lengths: Tensor) -> Tensor:
        return F.normalize(silhouettes[:, 0, :2, :2].reshape(len(lengths), 4) + 0.1, dim=1)


def test_a_shift_moves_the_frames_and_fills_with_background() -> None:
    frames = torch.arange(1, 13, dtype=torch.float32).reshape(1, 1, 3, 4)
    down = shift_frames(frames, 1, 0)[0, 0]
    assert down[0].tolist() == [0, 0, 0, 0] and down[1].tolist() == frames[0, 0, 0].tolist()
    left = shift_frames(frames, 0, -1)[0, 0]
    assert left[:, -1].tolist() == [0, 0, 0] and left[:, 0].tolist() == frames[0, 0, :, 1].tolist()
    assert shift_frames(frames, 0, 0) is frames
    with pytest.raises(ValueError, match="one pixel"):
        shift_frames(frames, 2, 0)


def test_the_ensemble_is_the_renormalised_mean_of_the_shifted_passes() -> None:
    inner = _FirstPixels()
    frames = torch.rand(3, 2, 6, 5)
    lengths = torch.tensor([2, 1, 2])

    def ensemble(shifts: str) -> Tensor:
        return ensemble_embedding(
            inner(frames, lengths),
            lambda shifted: inner(shifted, lengths),
            frames,
            shift_offsets(shifts),
        )

    assert torch.equal(ensemble("none"), inner(frames, lengths))
    passes = [
        inner(shift_frames(frames, r, c), lengths) for r, c in TEST_TIME_SHIFT_OFFSETS["cross"]
    ]
    expected = F.normalize(torch.stack(passes).mean(0), dim=1)
    got = ensemble("cross")
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(3))
    assert not torch.allclose(got, inner(frames, lengths))


def test_the_named_sets_are_the_contracts_and_start_unshifted() -> None:
    assert tuple(TEST_TIME_SHIFT_OFFSETS) == TEST_TIME_SHIFT_SETS
    assert all(offsets[0] == (0, 0) for offsets in TEST_TIME_SHIFT_OFFSETS.values())
    with pytest.raises(ContractError, match="none, cross"):
        shift_offsets("diagonal")


def test_the_ensemble_needs_the_unshifted_pass_first() -> None:
    frames = torch.rand(1, 2, 6, 5)
    with pytest.raises(ValueError, match=r"\(0, 0\)"):
        ensemble_embedding(frames[:, 0, 0], lambda shifted: shifted[:, 0, 0], frames, [(1, 0)])
