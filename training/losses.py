"""Loss terms of the LMGCS network (paper section III-E, Eqs. 10-14).

- :func:`batch_all_triplet` is OpenGait's ``TripletLoss``: for every part separately, all
  (anchor, positive, negative) triplets of the batch with Euclidean distances, hinge at the
  margin, averaged over the triplets whose loss is non-zero ("mean over non-zero"), then averaged
  over parts. As in OpenGait the anchor itself counts as one of its positives (distance 0), which
  pushes every negative beyond the margin. Eq. 10 (L_tri1) and Eq. 11 (L_tri2) are this loss on
  ``tri1_features`` and ``tri2_features``.
- :func:`part_cross_entropy` is Eq. 13 through the BNNeck, one classifier per part, averaged.

Each returns a scalar plus the statistics logged next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class TripletStats:
    loss: Tensor  # scalar, mean over parts of the per-part non-zero mean
    active_fraction: Tensor  # fraction of triplets with a non-zero hinge (detached)
    mean_distance: Tensor  # mean pairwise distance (detached), watches collapse


def pairwise_euclidean(x: Tensor) -> Tensor:
    """``[P, N, D] -> [P, N, N]`` Euclidean distances per part (OpenGait's expansion).

    The clamp at 1e-12 (not OpenGait's plain ReLU) keeps sqrt's derivative finite on the
    diagonal, where the expansion can leave a tiny positive rounding residue.
    """
    sq = (x * x).sum(-1)
    d2 = sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * x @ x.transpose(1, 2)
    return torch.sqrt(d2.clamp(min=1e-12))


def batch_all_triplet(features: Tensor, labels: Tensor, margin: float) -> TripletStats:
    """Batch-all triplet loss per part; ``features [N, P, D]``, ``labels [N]``.

    Computed in float32 whatever the autocast dtype: distances of nearby unit-scale features
    lose too much in bf16.
    """
    if features.ndim != 3:
        raise ValueError(f"triplet features must be [N, P, D], got shape {tuple(features.shape)}")
    if labels.shape != features.shape[:1]:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match {features.shape[0]} walks"
        )
    x = features.float().transpose(0, 1)  # [N, P, D] -> [P, N, D]
    dist = pairwise_euclidean(x)  # [P, N, N]
    same = labels.unsqueeze(1) == labels.unsqueeze(0)  # [N, N], diagonal included (OpenGait)
    counts = same.sum(1)
    p, n = dist.shape[:2]
    if bool((counts == counts[0]).all()):
        # every identity has c walks (a P x K batch): gather the c positives and N-c negatives
        # of each anchor, [P, N, N] -> [P, N, c, 1] and [P, N, 1, N-c]; O(P*N*c*(N-c)) memory
        c = int(counts[0])
        ap = dist[:, same].view(p, n, c, 1)
        an = dist[:, ~same].view(p, n, 1, n - c)
        hinge = F.relu(ap - an + margin).flatten(1)
        triplets = n * c * (n - c)
    else:
        # unequal counts: [P, N, N, 1] - [P, N, 1, N] -> [P, N, N, N] masked to valid triplets
        valid = same.unsqueeze(2) & ~same.unsqueeze(1)
        hinge = (F.relu(dist.unsqueeze(3) - dist.unsqueeze(2) + margin) * valid).flatten(1)
        triplets = int(valid.sum())
    per_part_sum = hinge.sum(1)  # [P]
    per_part_nonzero = (hinge > 0).sum(1).float()  # [P]
    per_part = torch.where(
        per_part_nonzero > 0, per_part_sum / per_part_nonzero.clamp(min=1.0), per_part_sum * 0.0
    )
    total = max(triplets, 1) * p
    return TripletStats(
        loss=per_part.mean(),
        active_fraction=(per_part_nonzero.sum() / total).detach(),
        mean_distance=dist.mean().detach(),
    )


def part_cross_entropy(
    logits: Tensor, labels: Tensor, label_smoothing: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Mean over parts of the cross-entropy of ``logits [N, P, K]``; returns (loss, accuracy)."""
    if logits.ndim != 3:
        raise ValueError(f"logits must be [N, P, K], got shape {tuple(logits.shape)}")
    n, p, k = logits.shape
    flat = logits.float().reshape(n * p, k)  # [N, P, K] -> [N*P, K]
    target = labels.repeat_interleave(p)  # [N] -> [N*P], aligned with the reshape above
    loss = F.cross_entropy(flat, target, label_smoothing=label_smoothing)
    accuracy = (flat.argmax(1) == target).float().mean().detach()
    return loss, accuracy
