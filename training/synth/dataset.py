"""``gaitid synth``: write a CASIA-B-like synthetic dataset in the OpenGait layout.

Each subject is drawn from its own seed (``SeedSequence([seed, subject])``) and each walk from
``SeedSequence([seed, subject, condition, view])``, so the output does not depend on the
number of workers or on which subjects or views are asked for: subject 007 at view 090 is
the same walk in a 10-subject and in a 100-subject dataset.

A walk is rendered as camera frames (320x240 by default), corrupted with segmentation noise
and then goes through the very pretreatment real data goes through
(:func:`gaitid.preprocess.normalize_sequence`), so the network cannot tell the two apart by
their processing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gaitid.preprocess import normalize_sequence
from gaitid.training.data.opengait import (
    PARTITION_FILENAME,
    Partition,
    WalkKey,
    save_partition,
    write_walk,
)
from gaitid.training.data.parallel import parallel_map
from gaitid.training.synth.identity import Identity, sample_identity, vary_for_walk
from gaitid.training.synth.kinematics import pose_walk
from gaitid.training.synth.render import NoiseLevel, Shot, project, rasterize, segmentation_noise

logger = logging.getLogger(__name__)

#: CASIA-B's 11 views, degrees.
CASIA_B_VIEWS: Final = tuple(range(0, 181, 18))
#: CASIA-B's 10 walks per subject and view.
CASIA_B_CONDITIONS: Final = (
    *(f"nm-{i:02d}" for i in range(1, 7)),
    "bg-01",
    "bg-02",
    "cl-01",
    "cl-02",
)
_CONDITION_PATTERN: Final = re.compile(r"^(nm|bg|cl)-(\d{2})$")
_CONDITION_KINDS: Final = ("nm", "bg", "cl")


class SynthConfig(BaseModel):
    """What to generate. Unknown keys are rejected so a misspelt setting cannot be ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subjects: int = Field(ge=1, description="number of identities, named 001, 002, ...")
    seed: int = Field(default=0, ge=0)
    views: tuple[int, ...] = Field(default=CASIA_B_VIEWS, min_length=1)
    conditions: tuple[str, ...] = Field(default=CASIA_B_CONDITIONS, min_length=1)
    min_frames: int = Field(default=40, ge=1, description="shortest walk, frames")
    max_frames: int = Field(default=110, ge=1, description="longest walk, frames")
    width: int = Field(default=320, ge=64, description="camera frame width, pixels")
    height: int = Field(default=240, ge=64, description="camera frame height, pixels")
    train_fraction: float = Field(
        default=0.6, gt=0.0, lt=1.0, description="share of subjects (the first ones) in TRAIN_SET"
    )
    noise: bool = Field(default=True, description="add segmentation noise to the masks")

    @field_validator("views")
    @classmethod
    def _views_in_range(cls, views: tuple[int, ...]) -> tuple[int, ...]:
        bad = [v for v in views if not 0 <= v <= 180]
        if bad:
            raise ValueError(f"views must be degrees in 0..180; got {bad}")
        if len(set(views)) != len(views):
            raise ValueError(f"views must be unique; got {list(views)}")
        return views

    @field_validator("conditions")
    @classmethod
    def _conditions_known(cls, conditions: tuple[str, ...]) -> tuple[str, ...]:
        bad = [c for c in conditions if not _CONDITION_PATTERN.match(c) or c.endswith("-00")]
        if bad:
            raise ValueError(
                f"conditions must look like nm-01, bg-02 or cl-01 (kind nm/bg/cl, index 01-99); "
                f"got {bad}"
            )
        if len(set(conditions)) != len(conditions):
            raise ValueError(f"conditions must be unique; got {list(conditions)}")
        return conditions

    @model_validator(mode="after")
    def _frames_ordered(self) -> SynthConfig:
        if self.min_frames > self.max_frames:
            raise ValueError(
                f"min_frames ({self.min_frames}) must not exceed max_frames ({self.max_frames})"
            )
        return self

    def subject_ids(self) -> list[str]:
        """Folder names of the subjects: zero-padded to at least 3 digits, from 001."""
        digits = max(3, len(str(self.subjects)))
        return [f"{i:0{digits}d}" for i in range(1, self.subjects + 1)]

    def partition(self) -> Partition:
        """The first ``train_fraction`` of subjects train, the rest test (at least one each)."""
        ids = self.subject_ids()
        if len(ids) == 1:
            return Partition.model_validate({"train_set": ids, "test_set": []})
        n_train = min(max(1, round(self.train_fraction * len(ids))), len(ids) - 1)
        return Partition.model_validate({"train_set": ids[:n_train], "test_set": ids[n_train:]})


@dataclass(frozen=True)
class SynthReport:
    """What :func:`generate_dataset` wrote."""

    walks: int
    frames: int  # frames kept after pretreatment
    dropped: int  # frames the pretreatment dropped (too little foreground)
    partition: Path


def subject_identity(seed: int, subject: int) -> Identity:
    """The identity of subject number ``subject`` (0-based) under ``seed``."""
    return sample_identity(np.random.default_rng(np.random.SeedSequence([seed, subject])))


def render_walk(
    identity: Identity,
    condition: str,
    view_deg: int,
    rng: np.random.Generator,
    config: SynthConfig,
) -> NDArray[np.uint8]:
    """Camera frames uint8 0/255 ``[T, H, W]`` of one walk (before pretreatment)."""
    match = _CONDITION_PATTERN.match(condition)
    if match is None:
        raise ValueError(f"condition must look like nm-01, bg-02 or cl-01; got {condition!r}")
    kind, index = match.group(1), int(match.group(2))
    walker = vary_for_walk(identity, rng)
    n_frames = int(rng.integers(config.min_frames, config.max_frames + 1))
    bag = identity.bags[(index - 1) % 2] if kind == "bg" else None
    primitives = pose_walk(walker, kind, n_frames, float(rng.random()), bag)  # type: ignore[arg-type]
    shot = Shot(
        view_deg=view_deg + float(rng.normal(0.0, 4.0)),
        elevation_deg=float(rng.uniform(2.0, 10.0)),
        stature_px=walker.stature_px,
        width=config.width,
        height=config.height,
    )
    masks = rasterize(project(primitives, shot), shot)
    if config.noise:
        masks = segmentation_noise(masks, shot, rng, NoiseLevel())
    return masks


def _walk_rng(seed: int, subject: int, condition: str, view_deg: int) -> np.random.Generator:
    """The generator of one walk; independent of every other walk's."""
    kind, index = condition.split("-")
    entropy = [seed, subject, _CONDITION_KINDS.index(kind), int(index), view_deg]
    return np.random.default_rng(np.random.SeedSequence(entropy))


@dataclass(frozen=True)
class _Job:
    config: SynthConfig
    subject: int
    condition: str
    view: int
    out_root: Path
    raw_root: Path | None


def _run_job(job: _Job) -> tuple[int, int]:
    """Render, pretreat and write one walk; returns (frames kept, frames dropped)."""
    identity = subject_identity(job.config.seed, job.subject)
    rng = _walk_rng(job.config.seed, job.subject, job.condition, job.view)
    masks = render_walk(identity, job.condition, job.view, rng, job.config)
    key = WalkKey(job.config.subject_ids()[job.subject], job.condition, f"{job.view:03d}")
    if job.raw_root is not None:
        raw_dir = job.raw_root / key.relative_dir()
        raw_dir.mkdir(parents=True, exist_ok=True)
        for t, mask in enumerate(masks):
            cv2.imwrite(
                str(raw_dir / f"{key.subject}-{key.condition}-{key.view}-{t:03d}.png"), mask
            )
    normalised = normalize_sequence(masks)
    write_walk(job.out_root, key, normalised.frames)
    return normalised.used, normalised.dropped


def _jobs(config: SynthConfig, out_root: Path, raw_root: Path | None) -> Iterator[_Job]:
    for subject in range(config.subjects):
        for condition in config.conditions:
            for view in config.views:
                yield _Job(config, subject, condition, view, out_root, raw_root)


def generate_dataset(
    config: SynthConfig,
    out_root: Path,
    raw_root: Path | None = None,
    workers: int = 1,
    on_walk: Callable[[], None] | None = None,
) -> SynthReport:
    """Write every walk of ``config`` under ``out_root`` plus ``out_root/partition.json``.

    ``raw_root`` also keeps the camera frames as PNGs in the raw CASIA-B layout
    (``raw_root/<subject>/<condition>/<view>/*.png``). ``on_walk`` is called after each walk
    (progress bars). ``workers > 1`` renders walks in that many processes; the output is the
    same either way.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    raw = Path(raw_root) if raw_root is not None else None
    jobs = list(_jobs(config, out_root, raw))
    frames = dropped = 0
    for used, lost in parallel_map(_run_job, jobs, workers):
        frames, dropped = frames + used, dropped + lost
        if on_walk is not None:
            on_walk()
    partition = save_partition(config.partition(), out_root / PARTITION_FILENAME)
    logger.info("wrote %d synthetic walks (%d frames) to %s", len(jobs), frames, out_root)
    return SynthReport(walks=len(jobs), frames=frames, dropped=dropped, partition=partition)
