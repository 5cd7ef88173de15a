"""Horizontal pyramid mapping, paper Eq. 1: ``M = GAP(F) (+) GMP(F)`` per horizontal part.

Table I defines (+) as concatenation, while Eq. 1's surroundings write ``M in R^{n x c x m}``
(c channels, which only a sum keeps). Both readings are here (``LMGCSConfig.hpp``):
``"concat"`` stacks the mean and the max of each strip along the channels (2c channels), and
``"sum"`` adds them (c channels, OpenGait's HPP). Neither has parameters. Which one the
``paper`` variant uses, and why, is in ``model/README.md``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn


class HorizontalPooling(nn.Module):
    """``[N, C, T, H, W] -> [N, m, C', T]``: mean and max over each of ``m`` horizontal strips,
    summed (``C' = C``) or concatenated (``C' = 2C``, means first)."""

    def __init__(self, parts: int, combine: Literal["sum", "concat"] = "sum") -> None:
        super().__init__()
        self.parts = parts
        self.combine = combine

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, h, w = x.shape
        # [N, C, T, H, W] -> [N, C, T, m, H/m * W]
        strips = x.reshape(n, c, t, self.parts, (h // self.parts) * w)
        mean, peak = strips.mean(dim=-1), strips.amax(dim=-1)
        # [N, C, T, m] (sum) or [N, 2C, T, m] (concat)
        pooled = mean + peak if self.combine == "sum" else torch.cat([mean, peak], dim=1)
        # -> [N, m, C', T]
        return pooled.permute(0, 3, 1, 2)
