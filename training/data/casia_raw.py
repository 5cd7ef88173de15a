"""Raw CASIA-B style folders: ``ROOT/<subject>/<condition>/<view>/*.png`` frames.

Frames are the camera-sized masks a segmentation produced (any size, 0/255 or 0/1 PNGs), or
camera frames of the walk itself, ordered by a natural sort of their file names
(``...-2.png`` before ``...-10.png``). Walks go through the project's one front end and
pretreatment (:func:`gaitid.segment.read_walk`: silhouettes as they are, footage segmented
first), so they come out exactly as the OpenGait layout stores them and as the service sees
them; ``gaitid pretreat`` does it once for a whole dataset.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from gaitid.errors import InvalidSequenceError
from gaitid.preprocess import NormalizedSequence, value_scale
from gaitid.segment import read_walk
from gaitid.training.data.errors import DatasetError, DatasetFormatError
from gaitid.training.data.opengait import WalkKey

#: Frame files of a raw walk (CASIA-B ships PNG silhouettes).
FRAME_SUFFIX: Final = ".png"
_DIGITS: Final = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers by value: ``f2.png`` < ``f10.png``."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part.lower())
        for part in _DIGITS.split(name)
        if part
    )


def frame_paths(walk_dir: Path) -> list[Path]:
    """The PNG frames of one walk folder in natural order (hidden files skipped)."""
    walk_dir = Path(walk_dir)
    if not walk_dir.is_dir():
        raise DatasetFormatError(walk_dir, "walk folder does not exist")
    frames = [
        p
        for p in walk_dir.iterdir()
        if p.is_file() and p.suffix.lower() == FRAME_SUFFIX and not p.name.startswith(".")
    ]
    return sorted(frames, key=lambda p: natural_key(p.name))


def _sorted_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def iter_raw_walks(root: Path) -> Iterator[tuple[WalkKey, Path]]:
    """Yield ``(key, walk folder)`` for every folder that holds PNG frames, sorted by key.

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


def read_raw_frames(walk_dir: Path) -> list[NDArray[np.uint8]]:
    """Every frame of a walk folder as a grey uint8 ``(H, W)`` array, in natural order."""
    paths = frame_paths(walk_dir)
    if not paths:
        raise DatasetFormatError(Path(walk_dir), f"holds no {FRAME_SUFFIX} frames")
    frames = []
    for path in paths:
        frame = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if frame is None:
            raise DatasetFormatError(path, "not a readable PNG image")
        frames.append(np.asarray(frame, dtype=np.uint8))
    return frames


def load_raw_walk(walk_dir: Path, min_frames: int = 1) -> NormalizedSequence:
    """Read and pretreat one raw walk -> uint8 ``(T, 64, 64)`` plus its frame counts.

    Unusable content (fewer than ``min_frames`` frames with enough foreground, bad values)
    raises :class:`DatasetFormatError` naming the folder, chained to the preprocessing error.
    """
    walk_dir = Path(walk_dir)
    frames = read_raw_frames(walk_dir)
    # One array when all frames share a size, so the value scale (0/1 vs 0/255) is decided
    # once for the walk rather than per frame.
    same_size = all(f.shape == frames[0].shape for f in frames)
    source: NDArray[np.uint8] | list[NDArray[np.uint8]] = np.stack(frames) if same_size else frames
    scale = value_scale(source) if isinstance(source, np.ndarray) else None
    try:
        return read_walk(enumerate(source), scale=scale, min_frames=min_frames).sequence
    except InvalidSequenceError as exc:
        raise DatasetFormatError(walk_dir, str(exc)) from exc
