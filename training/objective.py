"""The training objective: the paper's weighted loss terms on one :class:`GaitOutput`.

``L = w_tri1 L_tri1 + w_tri2 L_tri2 + w_ce L_ce`` (Eqs. 10-14). The 256-d service embedding has
no loss term: it is fitted after training (``training.embedding_fit``). A term whose weight is 0
is not computed. Every term is returned unweighted for
logging next to the weighted total, as a detached tensor on the batch's device: reading one
is a host sync that stalls a GPU, so the trainer reads them all at once (:func:`to_host`),
only on the iterations it logs.

Under DDP each rank holds a disjoint slice of the P x K batch. The triplet terms need the whole
batch (a slice may hold too few walks of an identity), so features are all-gathered first, with
this rank's slice kept in the autograd graph (OpenGait's ``ddp_all_gather``). Each rank's
gathered loss then only back-propagates into its own slice; DDP averages gradients over ranks,
so the triplet losses are scaled by the world size to give the single-process gradient.
Cross-entropy is per walk and needs no gathering.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gaitid.model.output import GaitOutput
from gaitid.training.config import LossConfig
from gaitid.training.losses import batch_all_triplet, part_cross_entropy


@dataclass(frozen=True)
class LossBreakdown:
    total: Tensor  # weighted sum, the tensor to back-propagate
    terms: dict[str, Tensor]  # unweighted values and statistics (0-d, detached), for logging


def to_host(terms: dict[str, Tensor]) -> dict[str, float]:
    """0-d tensors -> floats in one device-to-host copy (one sync instead of one per term)."""
    if not terms:
        return {}
    values = torch.stack([t.detach().float().reshape(()) for t in terms.values()])
    return dict(zip(terms, values.cpu().tolist(), strict=True))


def _gather(x: Tensor) -> Tensor:
    """Concatenate ``x`` over ranks in rank order, keeping gradients for the local part."""
    import torch.distributed as dist

    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, 0)


def _distributed() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def compute_loss(output: GaitOutput, labels: Tensor, weights: LossConfig) -> LossBreakdown:
    """Weighted sum of the enabled loss terms for one batch (or one rank's slice of it)."""
    world = _distributed()

    def gathered(x: Tensor) -> Tensor:
        return _gather(x) if world > 1 else x

    all_labels = gathered(labels)
    total = output.tri1_features.new_zeros((), dtype=torch.float32)
    terms: dict[str, Tensor] = {}
    logged_total = total.detach()  # the single-process objective (no world-size scaling)
    for name, weight, features in (
        ("tri1", weights.tri1, output.tri1_features),
        ("tri2", weights.tri2, output.tri2_features),
    ):
        if weight > 0:
            stats = batch_all_triplet(gathered(features), all_labels, weights.margin)
            total = total + weight * world * stats.loss
            terms[f"loss_{name}"] = stats.loss.detach()
            logged_total = logged_total + weight * terms[f"loss_{name}"]
            terms[f"{name}_active"] = stats.active_fraction.detach()
            terms[f"{name}_mean_dist"] = stats.mean_distance.detach()
    if weights.ce > 0:
        if output.logits is None:
            raise ValueError("loss.ce > 0 needs a model with a classifier (num_classes > 0)")
        ce, accuracy = part_cross_entropy(output.logits, labels, weights.label_smoothing)
        total = total + weights.ce * ce
        terms["loss_ce"] = ce.detach()
        logged_total = logged_total + weights.ce * terms["loss_ce"]
        terms["ce_accuracy"] = accuracy.detach()
    terms["loss_total"] = logged_total
    return LossBreakdown(total, terms)
