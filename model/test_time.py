"""Test-time shift ensembling: a walk's embedding averaged over one-pixel shifts of its frames.

Why: the backbone pools twice with stride 2, so what it sees of a silhouette depends on where
its edges fall on the pixel grid, and a walk read twice (clean silhouettes, or the masks the
service segments from a camera clip, which differ by a pixel here and there) embeds
differently. Averaging the unit embeddings of the frames as they are and shifted by one pixel
up, down, left and right (``cross``), then re-normalising, smooths that away: on the shipped
model, the cosine between a walk's clean and clip readings rose from 0.881 to 0.923 and the
identity-regime FNMR at FMR 1e-3 fell from 11.5 % to 9.6 % on subjects 063-074 (BENCHMARKS.md,
"Shift ensembling"), for five passes of the network instead of one.

The shifts fill with background (zeros) and drop the row or column pushed out; the pretreated
frames keep the person away from the sides, so no person pixel is lost in practice. The same
set applies to every walk, gallery or probe: it is part of the embedding function, so the
ONNX export holds it in the graph (``gaitid.model.export``, metadata ``test_time_shifts``) and
the PyTorch evaluation applies it (``training.evaluation.extract.torch_features``), so that a
threshold calibrated on a checkpoint holds for its export.
"""

from __future__ import annotations

from typing import Final

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaitid.contract import DEFAULT_TEST_TIME_SHIFTS, TEST_TIME_SHIFT_SETS

#: ``(rows, columns)`` offsets of each named set; a positive offset moves the frame down/right.
SHIFT_SETS: Final[dict[str, tuple[tuple[int, int], ...]]] = {
    "none": ((0, 0),),
    "cross": ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)),
}
#: The names, ``none`` (one pass, the network alone) or ``cross`` (five passes): the
#: contract's (``test_time_shifts`` metadata).
SHIFT_SET_NAMES: Final[tuple[str, ...]] = TEST_TIME_SHIFT_SETS
#: What exports and evaluations use unless told otherwise (the shipped model's set).
DEFAULT_SHIFTS: Final[str] = DEFAULT_TEST_TIME_SHIFTS


def offsets_of(shifts: str) -> tuple[tuple[int, int], ...]:
    """The offsets of a named set; ``ValueError`` naming the known sets otherwise."""
    try:
        return SHIFT_SETS[shifts]
    except KeyError:
        raise ValueError(
            f"unknown test-time shift set {shifts!r}; one of {', '.join(SHIFT_SET_NAMES)}"
        ) from None


def shift_frames(silhouettes: Tensor, rows: int, columns: int) -> Tensor:
    """``[N, T, H, W]`` frames moved by ``rows`` down and ``columns`` right (|offset| <= 1),
    zero-filled: a zero pad of one pixel, then the window at the shifted place."""
    if max(abs(rows), abs(columns)) > 1:
        raise ValueError(f"offsets are at most one pixel, got ({rows}, {columns})")
    if rows == 0 and columns == 0:
        return silhouettes
    height, width = silhouettes.shape[-2], silhouettes.shape[-1]
    padded = F.pad(silhouettes, (1, 1, 1, 1))
    return padded[..., 1 - rows : 1 - rows + height, 1 - columns : 1 - columns + width]


def mean_of_unit(total: Tensor) -> Tensor:
    """The sum of unit embeddings ``[N, D]`` -> their re-normalised mean (the direction of the
    sum: dividing by the count first would change nothing)."""
    return F.normalize(total, dim=1)


class ShiftEnsemble(nn.Module):
    """``(silhouettes, lengths) -> embedding`` averaged over a shift set.

    The passes run one after another (not as one batch K times larger), so the memory a walk
    needs stays that of one pass, which the service's ``max_embed_frames`` bounds.
    """

    def __init__(self, inner: nn.Module, shifts: str = DEFAULT_SHIFTS) -> None:
        super().__init__()
        self.inner = inner
        self.offsets = offsets_of(shifts)

    def forward(self, silhouettes: Tensor, lengths: Tensor) -> Tensor:
        if len(self.offsets) == 1:
            return self.inner(silhouettes, lengths)
        total = torch.zeros(())
        for rows, columns in self.offsets:
            total = total + self.inner(shift_frames(silhouettes, rows, columns), lengths)
        return mean_of_unit(total)
