"""Average the weights of several checkpoints of one network (stochastic weight averaging).

Why: every continuation of the shipped weights on the same 62 identities moved its endpoint
around the same accuracy on held-out people without improving it (``models/README.md``,
issue 25). Snapshots taken along a continuation at a constant learning rate sample the flat
region the optimiser wanders in; their uniform average lies nearer its centre, which
generalises better than any one snapshot (Izmailov et al., "Averaging Weights Leads to Wider
Optima and Better Generalization", 2018). The snapshots must share one starting point (a run
and its continuation, or the weights it continued from): averaging unrelated networks
averages nothing useful, which is why the architecture and identities are checked here.

The 256-d service embedding is fitted in closed form on a network's features
(``training.embedding_fit``), so the mean of several heads is not the head of the averaged
network: :func:`average_checkpoints` marks it unfitted, and ``gaitid average`` refits it.
The LMGCS network has no batch norm before its embedding (the one BNNeck feeds only the
cross-entropy term), so no statistics need recomputing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gaitid.contract import (
    CLIP_THRESHOLD_CALIBRATION_KEY,
    CLIP_THRESHOLD_KEY,
    DEFAULT_THRESHOLD_CALIBRATION_KEY,
    DEFAULT_THRESHOLD_KEY,
)
from gaitid.model.export import CheckpointError, read_checkpoint
from gaitid.training.checkpoint import RESUME_KEYS

__all__ = ["average_checkpoints"]

#: Keys of a resumable training state that an average cannot have (it was never trained):
#: the resume keys less the weights and the training config, which it keeps.
_RESUME_ONLY = tuple(key for key in RESUME_KEYS if key not in ("model", "config"))

#: Metadata that describes one network's fitted head or calibrated scores, not the average's.
_STALE_META = (
    "embedding_fit",
    DEFAULT_THRESHOLD_KEY,
    DEFAULT_THRESHOLD_CALIBRATION_KEY,
    CLIP_THRESHOLD_KEY,
    CLIP_THRESHOLD_CALIBRATION_KEY,
)

#: The embedding head's fitted flag (``model.embedding_head.EmbeddingHead``).
_FITTED_KEY = "embedding_head.fitted"


def average_checkpoints(paths: Sequence[Path]) -> dict[str, Any]:
    """The uniform average of the weights in ``paths`` as a checkpoint dict, head unfitted.

    Floating-point tensors are averaged in float64 and cast back; integer buffers (counters)
    are taken from the last file. Everything else (model config, identities, training config,
    metadata) comes from the last file, less its head fit and calibrated thresholds, with
    ``meta.averaged_from`` naming each source by file name and iteration (no local paths). The
    result is not resumable: it was never a state of the optimiser. Raises
    :class:`CheckpointError` for fewer than two files or files whose networks differ.
    """
    if len(paths) < 2:
        raise CheckpointError(f"averaging needs at least two checkpoints, got {len(paths)}")
    states = [read_checkpoint(path) for path in paths]
    reference, last = states[0], states[-1]
    for path, state in zip(paths[1:], states[1:], strict=True):
        _check_same_network(paths[0], reference, path, state)
    averaged: dict[str, torch.Tensor] = {}
    for key, value in last["model"].items():
        if value.is_floating_point():
            total = torch.zeros_like(value, dtype=torch.float64)
            for state in states:
                total += state["model"][key].to(torch.float64)
            averaged[key] = (total / len(states)).to(value.dtype)
        else:
            averaged[key] = value.clone()
    if _FITTED_KEY in averaged:
        averaged[_FITTED_KEY] = torch.tensor(False)
    meta = {key: value for key, value in last.get("meta", {}).items() if key not in _STALE_META}
    meta["averaged_from"] = [
        {"file": Path(path).name, "iteration": _iteration_of(state)}
        for path, state in zip(paths, states, strict=True)
    ]
    if "version" in meta:
        meta["version"] = f"{meta['version']}.avg{len(states)}"
    result = {key: value for key, value in last.items() if key not in _RESUME_ONLY}
    result["model"] = averaged
    result["meta"] = meta
    return result


def _check_same_network(
    first_path: Path, first: dict[str, Any], path: Path, state: dict[str, Any]
) -> None:
    """Refuse to average networks of another shape, configuration or set of identities."""
    for key in ("model_config", "num_classes", "labels"):
        if first.get(key) != state.get(key):
            raise CheckpointError(
                f"{path} and {first_path} differ in {key}: only checkpoints of one network "
                "(a run, its continuations and the weights it started from) can be averaged"
            )
    mine, theirs = first["model"], state["model"]
    if mine.keys() != theirs.keys() or any(mine[key].shape != theirs[key].shape for key in mine):
        raise CheckpointError(f"{path} and {first_path} hold different weight tensors")


def _iteration_of(state: dict[str, Any]) -> int | None:
    """Total iterations behind a checkpoint (continuations included), where it records them."""
    meta = state.get("meta", {})
    value = meta.get("total_iterations", meta.get("iteration", state.get("iteration")))
    return int(value) if value is not None else None
