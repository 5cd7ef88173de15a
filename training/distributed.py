"""DDP as a mode: the process context, device choice and the rank-0 broadcast.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised (NCCL on CUDA, gloo on
CPU); without it nothing touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from gaitid.training.setup import TrainingError


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_rank0(value: float, ctx: DistContext) -> float:
    """Rank 0's ``value`` on every rank, so that all ranks take the same schedule decisions
    (a split decision would deadlock the next collective)."""
    import torch.distributed as dist

    tensor = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


def _pick_device(preference: str, local_rank: int) -> torch.device:
    if preference == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device: cuda was asked for but no CUDA device is visible")
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_preference: str) -> DistContext:
    """Join the ``torchrun`` process group when there is one; else a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _pick_device(device_preference, local_rank)
    if world_size == 1:
        return DistContext(0, 1, device)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)
