"""Segmentation front end: speed on a 10-second VGA clip, and mask IoU on composited clips.

Speed: a 10 s, 640x480, 25 fps clip (250 frames) of a synthetic walker crossing a textured
scene, mp4-encoded, goes through ``gaitid.decode.decode_upload`` (mp4 decoding, input-kind
detection, background subtraction, tracking, pretreatment) ``--repeats`` times; the script
reports the median wall time, separately the time of decoding alone
(``gaitid.decode.read_frames``), and the peak memory of one more read under ``tracemalloc``.

IoU: clips composited from known masks (``tests.utils.clips``: textured garment, textured
static scene, sensor noise, lighting drift, mp4) are segmented and each kept frame's mask is
compared with the mask that made it (frames aligned by index): at the working size, and after
the pretreatment (the 64x64 silhouettes the model sees, thresholded at 128). Scenarios: the
synthetic walker crossing (several seeds, with and without an empty-scene frame, with a cast
shadow, with a second moving object, towards the camera with an empty-scene frame), and real
CASIA-B walks of subjects 063-074 (``../shared/data/casia-b-train``, when present) composited
the same way.

    .venv/bin/python bench/segmentation.py --repeats 3 --real-walks 48
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from gaitid.decode import decode_upload, read_frames  # noqa: E402
from gaitid.preprocess import normalize_frame  # noqa: E402
from gaitid.segment import FrontEnd, SegmentationConfig, segment_clip, to_working_rgb  # noqa: E402
from tests.utils import clips  # noqa: E402

REAL_DATA = ROOT.parent / "shared" / "data" / "casia-b-train"


def speed(repeats: int, config: SegmentationConfig | None = None) -> None:
    clip = clips.crossing_clip(frames=250, height=480, width=640, seed=1)
    data = clips.encode_mp4(clip.frames)
    decode_s, total_s = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        read_frames(data)
        decode_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        result = decode_upload(
            data, "clip.mp4", front_end=FrontEnd(config=config or SegmentationConfig())
        )
        total_s.append(time.perf_counter() - start)
    # the peak of what Python and NumPy (OpenCV's arrays included) hold while one clip is read
    tracemalloc.start()
    decode_upload(data, "clip.mp4", front_end=FrontEnd(config=config or SegmentationConfig()))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(
        f"10 s 640x480 25 fps mp4 ({len(data) / 1e6:.1f} MB, 250 frames): "
        f"decode only {statistics.median(decode_s):.2f} s, decode + segmentation + "
        f"pretreatment {statistics.median(total_s):.2f} s (median of {repeats}; "
        f"{result.used} frames used, {dict(result.drops)}); peak traced memory "
        f"{peak / 2**20:.0f} MiB"
    )


def _silhouette(mask: np.ndarray) -> np.ndarray | None:
    out = normalize_frame(mask.astype(np.uint8) * 255 if mask.dtype == bool else mask)
    return None if out is None else out >= 128


def iou_of(clip: clips.Clip, *, with_scene: bool) -> tuple[float, float, int]:
    """Mean mask IoU at the working size and after pretreatment, and frames kept."""
    config = SegmentationConfig()
    frames = read_frames(clips.encode_mp4(clip.frames))
    small = [(i, to_working_rgb(f, None, config)) for i, f in enumerate(frames)]
    found = segment_clip(small, background=clip.empty_scene if with_scene else None)
    height, width = small[0][1].shape[:2]
    working, final = [], []
    for key, mask in found.masks:
        truth = clip.truth[int(key)]  # type: ignore[call-overload]
        small_truth = cv2.resize(
            truth.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_AREA
        )
        working.append(clips.mask_iou(mask > 0, small_truth > 127))
        ours, theirs = _silhouette(mask), _silhouette(truth)
        if ours is not None and theirs is not None:
            final.append(clips.mask_iou(ours, theirs))
    return float(np.mean(working)), float(np.mean(final)), len(found.masks)


def synthetic() -> None:
    scenarios = {
        "crossing": [({"seed": s}, False) for s in range(1, 6)],
        "crossing, empty-scene frame": [({"seed": s}, True) for s in range(1, 6)],
        "crossing, noise 8 + drift 30 %": [
            ({"seed": s, "noise_sigma": 8.0, "drift": 0.3}, False) for s in range(1, 4)
        ],
        "crossing, cast shadow": [({"seed": s, "shadow": True}, False) for s in range(1, 4)],
        "crossing, second moving object": [
            ({"seed": s, "passer_by": True}, False) for s in range(1, 4)
        ],
        "crossing, VGA": [({"seed": s, "height": 480, "width": 640}, False) for s in (1, 2)],
        "towards the camera, empty-scene frame": [
            ({"seed": s, "towards_camera": True}, True) for s in range(1, 4)
        ],
    }
    print("| scenario | clips | IoU working size | IoU 64x64 silhouettes | frames kept |")
    print("|---|---|---|---|---|")
    for name, runs in scenarios.items():
        results = [iou_of(clips.crossing_clip(**kw), with_scene=scene) for kw, scene in runs]  # type: ignore[arg-type]
        _row(name, results)


def real(count: int) -> None:
    if not REAL_DATA.is_dir():
        print(f"(real walks skipped: {REAL_DATA} is absent)")
        return
    rng = np.random.default_rng(0)
    results = []
    for subject in range(63, 75):
        walks = np.load(REAL_DATA / f"{subject:03d}.npz")
        keys = sorted(walks.files)
        for key in rng.choice(keys, size=max(1, count // 12), replace=False):
            masks = clips.walk_masks(walks[key])
            if len(masks) < 20:
                continue
            clip = clips.crossing_clip(
                frames=len(masks), seed=subject, masks=masks, person_height=0.6
            )
            results.append(iou_of(clip, with_scene=False))
    _row(f"real CASIA-B walks 063-074 (random {len(results)})", results)


def _row(name: str, results: list[tuple[float, float, int]]) -> None:
    working = [r[0] for r in results]
    final = [r[1] for r in results]
    kept = sum(r[2] for r in results)
    print(
        f"| {name} | {len(results)} | mean {np.mean(working):.3f}, min {np.min(working):.3f} | "
        f"mean {np.mean(final):.3f}, min {np.min(final):.3f} | {kept} |",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real-walks", type=int, default=48)
    parser.add_argument(
        "--segmentation", default="{}", help="SegmentationConfig fields (JSON) for the speed run"
    )
    parser.add_argument(
        "--speed-only", action="store_true", help="only the speed run (no IoU scenarios)"
    )
    args = parser.parse_args(argv)
    speed(args.repeats, SegmentationConfig.model_validate_json(args.segmentation))
    if args.speed_only:
        return 0
    synthetic()
    real(args.real_walks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
