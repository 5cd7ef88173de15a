"""Factory of small synthetic gait datasets for unit tests (OpenGait layout on disk)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gaitid.training.synth.dataset import SynthConfig, generate_dataset


def make_synthetic_dataset(
    root: Path,
    subjects: int = 3,
    views: Sequence[int] = (0, 90, 180),
    conditions: Sequence[str] = ("nm-01", "nm-02", "bg-01", "cl-01"),
    seed: int = 0,
    frames: tuple[int, int] = (12, 18),
    raw_root: Path | None = None,
) -> Path:
    """Write a tiny CASIA-B-like dataset under ``root`` and return ``root``.

    ``root/<subject>/<condition>/<view>/<view>.pkl`` holds uint8 ``(T, 64, 64)`` walks with
    ``frames[0] <= T <= frames[1]``; subjects are ``001``, ``002``, ...; views are folder
    names such as ``"090"``; ``root/partition.json`` splits the subjects. The defaults
    (3 subjects x 3 views x 4 walks of 12-18 frames) take well under a second. ``raw_root``
    also keeps the 320x240 camera frames as PNGs in the raw layout.
    """
    config = SynthConfig(
        subjects=subjects,
        seed=seed,
        views=tuple(views),
        conditions=tuple(conditions),
        min_frames=frames[0],
        max_frames=frames[1],
    )
    generate_dataset(config, Path(root), raw_root=raw_root)
    return Path(root)
