"""Raw CASIA-B style folders: ``ROOT/<subject>/<condition>/<view>/*.png`` frames.

Frames are the camera-sized masks a segmentation produced (any size, 0/255 or 0/1 images),
or camera frames of the walk itself, ordered by a natural sort of their file names
(``...-2.png`` before ``...-10.png``). A walk folder is read by the service's own reader
(:func:`gaitid.decode.read_walk_from_path`: the same image decoding, colour kept, the same
front end and pretreatment), so training sees exactly the silhouettes the service makes of
the same frames; they come out as the OpenGait layout stores them. ``gaitid pretreat`` does
it once for a whole dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final

from gaitid.decode import DecodeLimits, frame_files, read_walk_from_path
from gaitid.errors import InvalidSequenceError
from gaitid.preprocess import NormalizedSequence
from gaitid.training.data.errors import DatasetError, DatasetFormatError
from gaitid.training.data.opengait import WalkKey

#: A dataset on local disk is trusted: the service's bounds on one upload (frames, pixels)
#: would refuse long or full-HD walks, so they are raised; frames are still reduced to the
#: working size one at a time.
RAW_LIMITS: Final = DecodeLimits(
    max_bytes=1 << 30,
    max_frames=100_000,
    max_pixels_per_frame=1 << 26,
    max_total_pixels=1 << 40,
)


def frame_paths(walk_dir: Path) -> list[Path]:
    """The image frames of one walk folder in natural order (hidden files skipped)."""
    walk_dir = Path(walk_dir)
    if not walk_dir.is_dir():
        raise DatasetFormatError(walk_dir, "walk folder does not exist")
    return frame_files(walk_dir)


def _sorted_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def iter_raw_walks(root: Path) -> Iterator[tuple[WalkKey, Path]]:
    """Yield ``(key, walk folder)`` for every folder that holds frames, sorted by key.

    Folders without frames (missing walks) are skipped, like the OpenGait reader does.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"raw dataset root {root} is not a directory")
    for subject_dir in _sorted_dirs(root):
        for condition_dir in _sorted_dirs(subject_dir):
            for view_dir in _sorted_dirs(condition_dir):
                if frame_paths(view_dir):
                    yield WalkKey(subject_dir.name, condition_dir.name, view_dir.name), view_dir


def load_raw_walk(walk_dir: Path, min_frames: int = 1) -> NormalizedSequence:
    """Read and pretreat one raw walk -> uint8 ``(T, 64, 64)`` plus its frame counts.

    Unreadable frames and unusable content (fewer than ``min_frames`` frames with enough
    foreground, bad values) raise :class:`DatasetFormatError` naming the folder (the message
    names the frame), chained to the decoding or preprocessing error.
    """
    walk_dir = Path(walk_dir)
    frame_paths(walk_dir)  # a missing folder is named as one
    try:
        return read_walk_from_path(walk_dir, limits=RAW_LIMITS, min_frames=min_frames).sequence
    except InvalidSequenceError as exc:
        raise DatasetFormatError(walk_dir, str(exc)) from exc
