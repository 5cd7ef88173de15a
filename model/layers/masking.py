"""Length masks and masked temporal pooling for zero-padded variable-length batches.

Walks of different lengths share a batch by zero-padding at the end of time. Every temporal
operation in the network reads this module's mask so padded frames never reach a real one:
that is what makes a walk's embedding the same alone and in a mixed-length batch.
"""

from __future__ import annotations

import torch
from torch import Tensor


def length_mask(lengths: Tensor, steps: int) -> Tensor:
    """``[N]`` lengths -> ``[N, T]`` bool, True on real frames (``t < length``)."""
    time = torch.arange(steps, device=lengths.device)
    return time.unsqueeze(0) < lengths.unsqueeze(1)


def zero_padded_frames(x: Tensor, mask: Tensor, time_dim: int) -> Tensor:
    """Zero ``x`` at padded time steps; ``mask`` is ``[N, T]`` and ``x`` is ``[N, ..., T, ...]``.

    Used after every temporal convolution: a conv with zero padding sees the same zeros past
    the end of a walk whether it runs alone or padded in a batch.
    """
    shape = [1] * x.dim()
    shape[0], shape[time_dim] = mask.shape[0], mask.shape[1]
    return x * mask.reshape(shape).to(x.dtype)


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    """Temporal max over real frames only: ``x [N, ..., T]`` with ``mask [N, T]`` -> ``[N, ...]``.

    Every walk has at least one real frame (lengths >= 1), so the result is always finite.
    """
    shape = [mask.shape[0]] + [1] * (x.dim() - 2) + [mask.shape[1]]
    filled = x.masked_fill(~mask.reshape(shape), float("-inf"))
    return filled.amax(dim=-1)
