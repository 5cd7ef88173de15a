"""Round trip of the preprocessing on real CASIA-B walks (issue 2 acceptance, >= 0.93).

Each frame of a pretreated walk (uint8 64x64) is enlarged by a random factor in [1.5, 3.5]
(bilinear), pasted at a random position inside a black 320x240 canvas and binarised at 128,
as a camera-resolution mask would be. The canvases of a walk are sent as one ``.npy``
through ``gaitid.decode.decode_upload`` (what ``gaitid preprocess walk.npy`` runs), and the
result is compared with the original middle 64x44; both thresholded at 128, IoU per frame,
averaged over all frames. A dropped frame counts as IoU 0.

usage: python bench/preprocess_roundtrip.py DATA_DIR [--walks N] [--seed S]
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from gaitid.decode import decode_upload
from gaitid.preprocess import SIDE_CROP, normalize_frame

CANVAS_HW = (240, 320)
SCALE_RANGE = (1.5, 3.5)
THRESHOLD = 128


@dataclass(frozen=True)
class RoundTrip:
    mean_iou: float
    frames: int
    walks: int
    dropped: int
    seconds: float


def pick_walks(data_dir: Path, walks: int, rng: np.random.Generator) -> list[NDArray[np.uint8]]:
    """``walks`` random walks (distinct subject files first, then any) from ``SSS.npz`` files."""
    files = sorted(data_dir.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"no SSS.npz files in {data_dir}")
    chosen: list[NDArray[np.uint8]] = []
    order = rng.permutation(len(files))
    for i in range(walks):
        with np.load(files[order[i % len(files)]], allow_pickle=False) as subject:
            key = subject.files[int(rng.integers(len(subject.files)))]
            chosen.append(subject[key])
    return chosen


def paste_into_canvas(frame64: NDArray[np.uint8], rng: np.random.Generator) -> NDArray[np.bool_]:
    """One 64x64 frame enlarged by a random factor at a random place in a 320x240 mask."""
    height, width = CANVAS_HW
    size = round(frame64.shape[0] * float(rng.uniform(*SCALE_RANGE)))
    enlarged = cv2.resize(frame64, (size, size), interpolation=cv2.INTER_LINEAR)
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    canvas = np.zeros(CANVAS_HW, np.uint8)
    canvas[top : top + size, left : left + size] = enlarged
    return canvas >= THRESHOLD


def frame_ious(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Per-frame IoU of two ``(T, H, W)`` stacks thresholded at 128 (empty vs empty = 1)."""
    fa, fb = a >= THRESHOLD, b >= THRESHOLD
    inter = (fa & fb).sum(axis=(1, 2))
    union = (fa | fb).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def roundtrip_walk(walk: NDArray[np.uint8], rng: np.random.Generator) -> tuple[list[float], int]:
    """IoUs of every frame of one walk after the canvas round trip, and the dropped count."""
    canvases = np.stack([paste_into_canvas(f, rng) for f in walk])
    buffer = io.BytesIO()
    np.save(buffer, canvases, allow_pickle=False)
    result = decode_upload(buffer.getvalue(), "walk.npy")
    target = walk[:, :, SIDE_CROP:-SIDE_CROP]
    if result.dropped == 0:
        return frame_ious(result.frames, target).tolist(), 0
    # find which frames were dropped with the very same per-frame function
    kept = [i for i, c in enumerate(canvases) if normalize_frame(c) is not None]
    ious = np.zeros(len(walk))
    ious[kept] = frame_ious(result.frames, target[kept])
    return ious.tolist(), result.dropped


def run(data_dir: Path, walks: int, seed: int) -> RoundTrip:
    """The acceptance figure on ``walks`` random walks of ``data_dir``."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    ious: list[float] = []
    dropped = 0
    for walk in pick_walks(data_dir, walks, rng):
        walk_ious, walk_dropped = roundtrip_walk(walk, rng)
        ious.extend(walk_ious)
        dropped += walk_dropped
    return RoundTrip(
        mean_iou=float(np.mean(ious)),
        frames=len(ious),
        walks=walks,
        dropped=dropped,
        seconds=time.perf_counter() - start,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder of CASIA-B SSS.npz files")
    parser.add_argument("--walks", type=int, default=50, help="number of random walks")
    parser.add_argument("--seed", type=int, default=0, help="seed of walk choice and pasting")
    args = parser.parse_args()
    result = run(args.data_dir.resolve(), args.walks, args.seed)
    print(
        f"preprocess round trip: mean IoU {result.mean_iou:.4f} over {result.frames} frames "
        f"of {result.walks} walks (dropped {result.dropped}), seed {args.seed}, "
        f"{result.seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
