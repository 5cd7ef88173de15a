"""Per-stripe linear maps (OpenGait's SeparateFCs / SeparateBNNecks, written afresh).

Each of the P feature stripes (part x branch) has its own weight matrix: the paper's mapping G
of Eqs. 10-11 and the BNNeck classifier behind the cross-entropy of Eq. 13.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SeparateFCs(nn.Module):
    """``[N, P, C] -> [N, P, D]`` with one ``C x D`` matrix per stripe."""

    def __init__(self, stripes: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(stripes, in_dim, out_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        # [N, P, C] -> [P, N, C] @ [P, C, D] -> [P, N, D] -> [N, P, D]
        return torch.bmm(x.transpose(0, 1), self.weight).transpose(0, 1)


class SeparateBNNecks(nn.Module):
    """BNNeck: batch norm over all ``P*D`` features, then a per-stripe classifier.

    Returns ``[N, P, K]`` logits. The norm sits between the triplet features and the
    classifier so the two losses do not fight over one feature space (Luo et al., BNNeck).
    """

    def __init__(self, stripes: int, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(stripes * dim)
        self.classifier = SeparateFCs(stripes, dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        n, p, d = x.shape
        # [N, P, D] -> [N, P*D] -> norm -> [N, P, D]
        normed = self.norm(x.reshape(n, p * d)).reshape(n, p, d)
        return self.classifier(normed)
