"""Horizontal pyramid mapping, paper Eq. 1: ``M = GAP(F) (+) GMP(F)`` per horizontal part.

The paper writes (+) and its Table I calls (+) concatenation, but M keeps c channels
(``M in R^{n x c x m}``), so we read the combination as the element-wise sum, as OpenGait's
HPP does (mean + max). It costs no parameters and keeps the part width c.
"""

from __future__ import annotations

from torch import Tensor, nn


class HorizontalPooling(nn.Module):
    """``[N, C, T, H, W] -> [N, m, C, T]``: mean + max over each of ``m`` horizontal strips."""

    def __init__(self, parts: int) -> None:
        super().__init__()
        self.parts = parts

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, h, w = x.shape
        # [N, C, T, H, W] -> [N, C, T, m, H/m * W]
        strips = x.reshape(n, c, t, self.parts, (h // self.parts) * w)
        pooled = strips.mean(dim=-1) + strips.amax(dim=-1)
        # [N, C, T, m] -> [N, m, C, T]
        return pooled.permute(0, 3, 1, 2)
