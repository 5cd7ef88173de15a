"""What a training run needs before its loop: the subjects and walks, the optimiser, and the
check that a resume continues the same run."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import ValidationError

from gaitid.cpu import cpu_flags
from gaitid.errors import GaitidError
from gaitid.training.config import DataConfig, OptimizerConfig, TrainConfig

logger = logging.getLogger(__name__)

#: Config settings that must match for a resume to continue the same run; everything else
#: (total iterations, logging, workers, device, evaluation) may change between calls. The
#: data settings are derived from the data section (all but ``DataConfig.RESUME_FREE``), so
#: a new window or augmentation setting is fixed without being listed here.
_RESUME_FIXED = (
    "seed",
    *(f"data.{name}" for name in DataConfig.model_fields if name not in DataConfig.RESUME_FREE),
    "model",
    "sampler",
    "optimizer",
    "loss",
    "schedule.milestones",
    "schedule.decay_at",
    "schedule.gamma",
    "schedule.warmup_iterations",
    "schedule.minutes",
    "init",
)


class TrainingError(GaitidError, RuntimeError):
    """A training run that cannot start or continue as configured."""


@dataclass(frozen=True)
class TrainingData:
    """Training walks in memory (uint8 ``(T, 64, 44)``) with class indices."""

    walks: list[NDArray[np.uint8]]
    labels: list[int]
    label_names: list[str]  # class index -> subject id
    val_subjects: list[str]


def select_subjects(config: TrainConfig) -> tuple[list[str] | None, list[str]]:
    """Training subjects (None = every subject of the root) and validation subjects."""
    from gaitid.training.data.opengait import load_partition

    data = config.data
    train: list[str] | None = data.train_subjects
    val: list[str] = list(data.val_subjects or [])
    if data.partition is not None:
        partition = load_partition(data.partition)
        train = list(partition.train_set)
        if data.val_subjects is None:
            val = list(partition.test_set)
    if train is not None and set(train) & set(val):
        raise TrainingError(
            f"subjects {sorted(set(train) & set(val))} are in training and validation"
        )
    return train, val


def load_training_data(config: TrainConfig) -> TrainingData:
    """Read the training subjects into memory, cropped to the network's 64 x 44 frames."""
    from gaitid.preprocess import to_network_input
    from gaitid.training.data.opengait import list_subjects, load_dataset

    train, val = select_subjects(config)
    if train is None:
        train = [s for s in list_subjects(config.data.root) if s not in set(val)]
    walks = load_dataset(config.data.root, train)
    names = sorted({key.subject for key in walks})
    index = {name: i for i, name in enumerate(names)}
    readings = [walks]
    if config.data.clip_walks is not None:
        # only the training subjects' readings: a validation subject's must never train
        clip = load_dataset(config.data.clip_walks, keep=lambda key: key.subject in index)
        if not clip:
            raise TrainingError(
                f"{config.data.clip_walks} holds no clip-route walk of a training subject"
            )
        logger.info("adding %d clip-route readings of training walks", len(clip))
        readings.append(clip)
    kept, labels, short = [], [], 0
    for reading in readings:
        for key in sorted(reading):
            frames = reading[key]
            if frames.shape[0] < config.data.min_frames:
                short += 1
                continue
            kept.append(np.ascontiguousarray(to_network_input(frames)))
            labels.append(index[key.subject])
    if short:
        logger.info("left out %d walks shorter than %d frames", short, config.data.min_frames)
    if not kept:
        raise TrainingError(f"no training walks under {config.data.root} for subjects {train}")
    logger.info("training on %d walks of %d subjects", len(kept), len(names))
    return TrainingData(kept, labels, names, val)


#: CPU flags of bf16 matrix units: AMX tiles (Intel Sapphire Rapids on) and AVX-512 BF16 (AMD
#: Zen 4 on, Intel Cooper Lake). With either, a lite training step under bf16 autocast was
#: 1.4-1.7x faster than fp32 here; without them bf16 is emulated and slower.
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 matrix products natively (its flags, ``gaitid.cpu``)."""
    return not BF16_CPU_FLAGS.isdisjoint(cpu_flags())


def use_autocast(amp: bool | str, device: torch.device) -> bool:
    """bf16 autocast or fp32, from ``trainer.amp`` (config docs) and where the run trains."""
    if amp == "auto":
        return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16_units())
    return bool(amp)


def build_optimizer(
    params: list[torch.nn.Parameter], cfg: OptimizerConfig
) -> torch.optim.Optimizer:
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def check_resume_compatible(saved: dict[str, Any], current: TrainConfig) -> None:
    """Refuse to resume a checkpoint under a config that would change the run it continues.

    The saved config is read as a config of today first, so a setting added since the
    checkpoint was written counts as its default (which is how that run trained).
    """
    with contextlib.suppress(ValidationError):  # an older layout is compared as it was saved
        saved = TrainConfig.model_validate(saved).model_dump(mode="json")
    now = current.model_dump(mode="json")
    changed = [key for key in _RESUME_FIXED if _lookup(saved, key) != _lookup(now, key)]
    if changed:
        details = "; ".join(f"{k}: {_lookup(saved, k)!r} -> {_lookup(now, k)!r}" for k in changed)
        raise TrainingError(f"cannot resume: the config changed in {details}")
