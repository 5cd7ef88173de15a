"""Training checkpoints: atomic writes and the complete state needed for an exact resume.

A checkpoint is one ``torch.save`` dict. The keys the model engineer reads
(``gaitid.model.export.load_checkpoint_model``) are ``model`` (state dict), ``model_config``
(``LMGCSConfig.model_dump()``), ``num_classes`` and ``meta``; the trainer adds ``optimizer``,
``scheduler``, ``sampler``, ``rng`` (one entry per DDP rank), ``iteration``, ``config`` (the
training config) and ``labels`` (class index -> subject id). No loss scaler is stored: bf16
autocast needs none. Everything is tensors and plain python values, so the file loads with
``torch.load(weights_only=True)`` (no code runs from a checkpoint); the numpy RNG state is
kept as a tensor for that reason.

Writes go to a temporary file in the same directory, are flushed to disk, then renamed over
the target with :func:`os.replace`, so a crash mid-write never leaves a truncated checkpoint.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from gaitid.model.export import CheckpointError, read_checkpoint

__all__ = [
    "RESUME_KEYS",
    "CheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "seed_everything",
]

RESUME_KEYS = ("model", "optimizer", "scheduler", "sampler", "rng", "iteration", "config")


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Atomically write ``state`` to ``path`` (tmp file + fsync + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path, *, for_resume: bool = False) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (``gaitid.model.export.read_checkpoint``, the one reader);
    ``for_resume`` also checks the resume keys exist."""
    state = read_checkpoint(path)
    if for_resume:
        missing = [k for k in RESUME_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"{path} cannot be resumed from: missing {missing}")
    return state


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG a training step may touch: python, numpy, torch CPU and CUDA."""
    name, keys, pos, has_gauss, cached = cast(tuple[Any, ...], np.random.get_state())
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA state only where CUDA is present)."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
