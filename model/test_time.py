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
set applies to every walk, gallery or probe: it is part of the embedding function. The
offsets are the contract's (``gaitid.contract.TEST_TIME_SHIFT_OFFSETS``); this module applies
them in PyTorch (``training.evaluation.extract.torch_features``, so that a threshold
calibrated on a checkpoint holds for its export) and ``gaitid.model.shift_graph`` writes the
same function into the ONNX graph around one exported pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor


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


def ensemble_embedding(
    unshifted: Tensor,
    embed: Callable[[Tensor], Tensor],
    silhouettes: Tensor,
    offsets: Sequence[tuple[int, int]],
) -> Tensor:
    """The shift ensemble's embedding, given the unshifted pass's (``offsets[0]`` is
    ``(0, 0)``): ``embed`` runs the network on the frames moved by each further offset.

    The caller runs the first pass itself because it may want more of it than the embedding
    (the evaluation keeps its part features). The passes run one after another, not as one
    batch K times larger, so in PyTorch a batch needs one pass's activations at a time.
    """
    if tuple(offsets[0]) != (0, 0):
        raise ValueError(f"the first offset of a shift set is (0, 0), got {offsets[0]}")
    if len(offsets) == 1:
        return unshifted
    total = unshifted.float()
    for rows, columns in offsets[1:]:
        total = total + embed(shift_frames(silhouettes, rows, columns)).float()
    return mean_of_unit(total)
