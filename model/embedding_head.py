"""The 256-d service embedding: a fixed linear reduction of the part features, fitted later.

    embedding = L2( W^T (concat_p L2(f_p) - mu) )        f_p: part feature p of [P, D]

Each part feature is scaled to unit length (so every part weighs the same, as in the part-wise
distance where each part contributes one Euclidean distance), the P*D vector is centred on the
training mean ``mu`` and reduced by ``W`` [P*D, 256], then L2-normalised for cosine / inner
product search. ``W`` is not trained by gradient: ``training.embedding_fit`` computes it in
closed form from the training walks once the network is trained, as PCA to 256 dimensions
followed by within-class whitening (regularised; the classic PCA + WCCN of speaker and person
re-identification). Whitening the within-identity scatter shrinks the directions along which one
person's walks vary (carrying a bag, a coat, the view) relative to those that separate people;
``model/README.md`` has the measurements that chose this over a learned projection.

Until fitted, ``W`` is a seeded random projection with orthonormal columns and ``mu`` is 0
(Johnson-Lindenstrauss: distances are roughly kept), so a random-initialised export still has
the contract's shape and unit-norm output. ``fitted`` records which of the two a model holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Seed of the unfitted random projection (a fixed value: the same config gives the same W).
_RANDOM_PROJECTION_SEED = 0


class EmbeddingHead(nn.Module):
    """``[N, P, D]`` part features -> ``[N, out_dim]`` unit vectors (fixed, fitted reduction)."""

    mean: Tensor
    weight: Tensor
    fitted: Tensor

    def __init__(self, parts: int, part_dim: int, out_dim: int) -> None:
        super().__init__()
        in_dim = parts * part_dim
        generator = torch.Generator().manual_seed(_RANDOM_PROJECTION_SEED)
        gaussian = torch.randn(in_dim, out_dim, generator=generator)
        # orthonormal columns when in_dim >= out_dim (QR of a Gaussian); else the scaled Gaussian
        weight = torch.linalg.qr(gaussian).Q if in_dim >= out_dim else gaussian / in_dim**0.5
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[1])

    @staticmethod
    def flatten_parts(part_features: Tensor) -> Tensor:
        """``[N, P, D]`` -> ``[N, P*D]`` with every part at unit length (the fit's input)."""
        return F.normalize(part_features, dim=-1).flatten(1)

    def forward(self, part_features: Tensor) -> Tensor:
        x = self.flatten_parts(part_features) - self.mean.to(part_features.dtype)
        return F.normalize(x @ self.weight.to(part_features.dtype), dim=1)

    @torch.no_grad()
    def set_reduction(self, mean: Tensor, weight: Tensor) -> None:
        """Install a fitted ``mean`` [P*D] and ``weight`` [P*D, out_dim]; marks the head fitted."""
        expected = (self.in_dim, self.out_dim)
        if tuple(mean.shape) != (self.in_dim,) or tuple(weight.shape) != expected:
            raise ValueError(
                f"reduction must be mean [{self.in_dim}] and weight [{self.in_dim}, "
                f"{self.out_dim}], got {tuple(mean.shape)} and {tuple(weight.shape)}"
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(weight).all()):
            raise ValueError("the fitted reduction holds non-finite values")
        self.mean.copy_(mean)
        self.weight.copy_(weight)
        self.fitted.fill_(True)

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted.item())
