"""LMFE, the local multi-resolution feature extractor (paper III-B, Eq. 2).

Per branch s, every frame i gets the window of s frames centred on it (the overlapping
sub-sequence M_s^i), and

    T_s^i = Re(M_s^i o k1 + b1) + Re(Re(M_s^i o k1 + b1) o k2 + b2)        (Eq. 2)

k1 spans the s frames of the window (a 1D conv over time with kernel s) and k2 acts on the
single vector it produces (kernel 1), so T_s^i depends on window i only. Weights are shared by
all parts (parts are folded into the batch): Table IX's parameter counts do not move with s,
which rules out per-part or large per-window weights.

Edges: the window is padded by repeating the walk's own first / last real frame ("replicate"),
computed per walk from ``lengths`` with one gather. A padded batch therefore never lets a
padded frame into a window, and short walks (1-2 frames) are not dominated by zero frames.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaitid.model.layers.masking import zero_padded_frames


def replicate_windows(x: Tensor, lengths: Tensor, radius: int) -> Tensor:
    """Pad time by ``radius`` per side with each walk's edge frames.

    ``x [N, m, c, T]`` -> ``[N, m, c, T + 2 * radius]``; frame ``t`` of the result is frame
    ``clamp(t - radius, 0, length - 1)`` of the walk, so padding never comes from the batch.
    """
    n, m, c, t = x.shape
    offsets = torch.arange(-radius, t + radius, device=x.device)
    # [N, T + 2r] index of the real frame each padded position copies
    index = torch.minimum(offsets.clamp(min=0).unsqueeze(0), (lengths - 1).unsqueeze(1))
    flat = index + (torch.arange(n, device=x.device) * t).unsqueeze(1)
    # [N, m, c, T] -> [N, T, m*c] -> [N*T, m*c] -> gather -> [N, T + 2r, m*c]
    frames = x.permute(0, 3, 1, 2).reshape(n * t, m * c)
    picked = frames[flat.reshape(-1)].reshape(n, t + 2 * radius, m, c)
    # [N, T + 2r, m, c] -> [N, m, c, T + 2r]
    return picked.permute(0, 2, 3, 1)


class LMFEBranch(nn.Module):
    """One temporal resolution s: ``[N, m, c, T] -> [N, m, c, T]`` (Eq. 2)."""

    def __init__(self, channels: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=window)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, x: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        n, m, c, t = x.shape
        radius = self.window // 2
        padded = replicate_windows(x, lengths, radius) if radius else x
        # [N, m, c, T + 2r] -> [N*m, c, T + 2r]; a valid conv of kernel s gives T outputs
        first = F.relu(self.conv1(padded.reshape(n * m, c, t + 2 * radius)))
        out = first + F.relu(self.conv2(first))
        # [N*m, c, T] -> [N, m, c, T]
        return zero_padded_frames(out.reshape(n, m, c, t), mask, time_dim=3)


class LMFE(nn.Module):
    """All branches: ``[N, m, c, T] -> [N, B, m, c, T]``, fine to coarse."""

    def __init__(self, channels: int, windows: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(LMFEBranch(channels, s) for s in windows)

    def forward(self, x: Tensor, lengths: Tensor, mask: Tensor) -> Tensor:
        return torch.stack([branch(x, lengths, mask) for branch in self.branches], dim=1)
