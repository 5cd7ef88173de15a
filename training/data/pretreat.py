"""``gaitid pretreat``: raw silhouette folders -> the OpenGait layout, once for a dataset.

Every walk under ``RAW/<subject>/<condition>/<view>/*.png`` is pretreated with
:func:`training.data.casia_raw.load_raw_walk` and written to
``OUT/<subject>/<condition>/<view>/<view>.pkl``. A walk that cannot be used (no usable
frame, an unreadable PNG) is skipped and reported with its reason instead of stopping a
run over thousands of walks; the report also counts the frames dropped for too little
foreground, as OpenGait's pretreatment logs them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gaitid.training.data.casia_raw import iter_raw_walks, load_raw_walk
from gaitid.training.data.errors import DatasetError
from gaitid.training.data.opengait import WalkKey, write_walk
from gaitid.training.data.parallel import parallel_map

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedWalk:
    """A raw walk that was not written, and why."""

    key: WalkKey
    reason: str


@dataclass(frozen=True)
class PretreatReport:
    """Outcome of :func:`pretreat`."""

    walks_written: int
    frames_written: int
    frames_dropped: int  # frames with too little foreground, over the written walks
    skipped: tuple[SkippedWalk, ...]


@dataclass(frozen=True)
class _Outcome:
    key: WalkKey
    used: int
    dropped: int
    reason: str | None


def _pretreat_walk(job: tuple[WalkKey, Path, Path, int]) -> _Outcome:
    """Pretreat and write one walk; a data problem becomes a skip reason, not a crash."""
    key, walk_dir, out_root, min_frames = job
    try:
        walk = load_raw_walk(walk_dir, min_frames=min_frames)
    except DatasetError as exc:
        return _Outcome(key, 0, 0, str(exc))
    write_walk(out_root, key, walk.frames)
    return _Outcome(key, walk.used, walk.dropped, None)


def pretreat(
    raw_root: Path,
    out_root: Path,
    workers: int = 1,
    min_frames: int = 1,
    on_walk: Callable[[], None] | None = None,
) -> PretreatReport:
    """Pretreat every raw walk of ``raw_root`` into the OpenGait layout under ``out_root``.

    ``min_frames`` is the fewest usable frames a walk needs to be written (OpenGait writes
    any walk with at least one). ``on_walk`` is called once per walk (progress bars).
    """
    raw_root, out_root = Path(raw_root), Path(out_root)
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    if min_frames < 1:
        raise ValueError(f"min_frames must be >= 1; got {min_frames}")
    if raw_root.resolve() == out_root.resolve():
        raise DatasetError(f"output {out_root} must differ from the raw root {raw_root}")
    walks = list(iter_raw_walks(raw_root))
    if not walks:
        raise DatasetError(
            f"no raw walks under {raw_root}; expected <subject>/<condition>/<view>/*.png"
        )
    jobs = [(key, walk_dir, out_root, min_frames) for key, walk_dir in walks]
    written = frames = dropped = 0
    skipped: list[SkippedWalk] = []
    for outcome in parallel_map(_pretreat_walk, jobs, workers):
        if outcome.reason is None:
            written, frames = written + 1, frames + outcome.used
            dropped += outcome.dropped
        else:
            logger.warning("skipped %s: %s", outcome.key, outcome.reason)
            skipped.append(SkippedWalk(outcome.key, outcome.reason))
        if on_walk is not None:
            on_walk()
    skipped.sort(key=lambda s: s.key)
    return PretreatReport(written, frames, dropped, tuple(skipped))
