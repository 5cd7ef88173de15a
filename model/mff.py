"""MFF, the multi-branch feature fusion (paper III-C, Eqs. 3-5).

- ``static`` (Eq. 4): C_1 = T_1, C_3 = T_1 + T_3, C_5 = T_1 + T_3 + T_5. The paper writes (+)
  and calls it concatenation, but its text says the fused feature is the *sum* of the branches
  and that the scheme adds no parameters, and C keeps the shape of T; so it is a cumulative sum
  from fine to coarse.
- ``static_reverse`` (Table XI, T_5 -> T_1): the cumulative sum from coarse to fine.
- ``attention`` (Eq. 5): C = S(T o k + b, T) (.) T + T. The branches at one frame and part are
  concatenated and fused by a 1D conv of kernel 1 (k, b); each branch's weight is the softmax,
  over branches, of its scaled dot product with the fused feature; the weighted branch is added
  to its input (residual).
- ``none``: C = T.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

FusionMode = Literal["static", "static_reverse", "attention", "none"]


class AttentionFusion(nn.Module):
    """Eq. 5 on ``[N, B, m, c, T]``."""

    def __init__(self, channels: int, branches: int) -> None:
        super().__init__()
        self.fuse = nn.Conv1d(branches * channels, channels, kernel_size=1)
        self.scale = 1.0 / math.sqrt(channels)

    def forward(self, x: Tensor) -> Tensor:
        n, b, m, c, t = x.shape
        # [N, B, m, c, T] -> [N, m, B, c, T] -> [N*m, B*c, T]
        stacked = x.permute(0, 2, 1, 3, 4).reshape(n * m, b * c, t)
        # [N*m, c, T] -> [N, 1, m, c, T]
        fused = self.fuse(stacked).reshape(n, 1, m, c, t)
        # correlation of each branch with the fused feature: [N, B, m, 1, T]
        scores = (x * fused).sum(dim=3, keepdim=True) * self.scale
        weights = torch.softmax(scores, dim=1)
        return weights * x + x


class MFF(nn.Module):
    """Fuse branches ``[N, B, m, c, T] -> [N, B, m, c, T]`` in the configured mode."""

    def __init__(self, mode: FusionMode, channels: int, branches: int) -> None:
        super().__init__()
        self.mode = mode
        self.attention = AttentionFusion(channels, branches) if mode == "attention" else None

    def forward(self, x: Tensor) -> Tensor:
        if self.attention is not None:
            return self.attention(x)
        if self.mode == "static":
            return torch.cumsum(x, dim=1)
        if self.mode == "static_reverse":
            return torch.cumsum(x.flip(1), dim=1).flip(1)
        return x
