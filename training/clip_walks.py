"""The clip route as a dataset: walks re-read through camera clips, computed once.

A camera user's walk reaches the model through decoding, ``gaitid.segment`` and the
pretreatment, and the model's scores move with it: the same walk read from a clip scores lower
against its own clean template than its clean silhouettes do. To measure and calibrate for
that route, every chosen walk of an OpenGait-layout dataset is composited into a camera clip
(:mod:`gaitid.training.synth.camera`, a seeded varied camera per walk), encoded, and read back
by :func:`gaitid.decode.decode_upload` exactly as the service reads an upload. What comes out
is written in the same layout (``gaitid eval --probe-data`` reads it as the probes), with one
JSON line per walk in ``clip-walks.jsonl``: the camera, frames visible / kept, why every
visible frame that was dropped was dropped, mask IoU against the composited truth, which frames
of the source walk reached the model, or why the clip was refused.

Segmentation does not depend on the model, so the data is built once and serves every model;
the slow part (about 5 s a walk on one core) runs in ``jobs`` processes and resumes where it
stopped. The camera of a walk depends only on the seed and the walk's key, so any subset, any
order and any number of jobs give the same clips.

The service's network input is the middle 44 of the 64 pretreated columns
(``gaitid.preprocess.to_network_input``); the stored 64x64 frames hold exactly that, padded
with empty columns, so a model sees what the service would have given it.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gaitid.contract import FRAME_HEIGHT, FRAME_WIDTH
from gaitid.preprocess import SIDE_CROP, normalize_frame, to_network_input
from gaitid.segment import SegmentationConfig
from gaitid.training.data.opengait import WalkKey, load_walk, write_walk
from gaitid.training.synth import camera as cam

logger = logging.getLogger(__name__)

#: One JSON line per walk, beside the subject folders.
MANIFEST_NAME = "clip-walks.jsonl"


@dataclass
class ClipWalk:
    """How one walk came through its clip: ``kept`` frames reached the model, of ``visible``
    in which the person was in full view; ``dropped_visible`` counts the visible frames the
    segmentation dropped, by its reason; ``iou`` is the mean mask IoU of the kept frames
    against the composited truth (working size); ``error`` says why the clip was refused."""

    key: str
    camera: dict[str, Any]
    seed: int
    frames: int = 0
    visible: int = 0
    kept: int = 0
    iou: float = float("nan")
    dropped_visible: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    #: the source walk's frame index of every frame that reached the model, in order (empty
    #: when refused, or when the pretreatment dropped a segmented frame and the order is lost)
    source_frames: list[int] = field(default_factory=list)
    #: rows the segmentation worked at (``SegmentationConfig.working_height``); manifests
    #: written before the field were all built at 240
    working_height: int = 240


def walk_camera(key: WalkKey, seed: int) -> tuple[cam.Camera, int]:
    """The camera and noise seed of ``key``'s clip: a function of the seed and the key only."""
    rng = np.random.default_rng([seed, zlib.crc32(str(key).encode())])
    camera = cam.draw_camera(key.view, rng)
    return camera, int(rng.integers(0, 2**31))


def read_through_clip(
    frames64: NDArray[np.uint8],
    camera: cam.Camera,
    seed: int,
    config: SegmentationConfig | None = None,
) -> tuple[NDArray[np.uint8] | None, ClipWalk]:
    """Composite a pretreated walk as ``camera`` films it, encode it and read it back as the
    service reads an upload: the network input ``(T, 64, 44)`` (``None`` when refused) and
    what happened to the walk on the way (``ClipWalk.key`` left for the caller)."""
    import cv2

    from gaitid.decode import decode_upload
    from gaitid.errors import GaitidError
    from gaitid.segment import FrontEnd, Segmentation

    config = config or SegmentationConfig()
    shown = cam.walk_frames_shown(frames64)
    masks = cam.walk_masks(frames64)
    record = ClipWalk(
        key="",
        camera=asdict(camera),
        seed=seed,
        frames=len(masks),
        working_height=config.working_height,
    )
    if not masks:
        record.error = "the walk has no frame with a person"
        return None, record
    clip = cam.camera_clip(masks, camera, seed=seed)
    data = cam.encode_clip(clip.frames, camera.codec)
    found: list[Segmentation] = []
    front_end = FrontEnd(
        input="video",
        config=config,
        observer=lambda _frames, seg: found.append(seg),
    )
    visible = [cam.fully_visible(t) for t in clip.truth]
    record.visible = sum(visible)
    tick = time.perf_counter()
    try:
        result = decode_upload(data, camera.filename, front_end=front_end)
    except GaitidError as exc:
        record.seconds = time.perf_counter() - tick
        record.error = f"{type(exc).__name__}: {exc}"
        return None, record
    record.seconds = time.perf_counter() - tick
    record.kept = result.used
    segmentation = found[0]
    ious, kept_order = [], []
    for key, mask in segmentation.masks:
        assert isinstance(key, int)  # a video's frames are keyed by their index
        kept_order.append(key)
        truth = cv2.resize(
            clip.truth[key].astype(np.uint8), mask.shape[::-1], interpolation=cv2.INTER_AREA
        )
        ious.append(cam.mask_iou(mask > 0, truth > 0))
    record.iou = float(np.mean(ious)) if ious else float("nan")
    kept_keys = set(kept_order)
    if len(kept_order) == result.used:  # else the pretreatment dropped one: the order is lost
        record.source_frames = [shown[key] for key in kept_order]
    lost: Counter[str] = Counter()
    for index, seen in enumerate(visible):
        if seen and index not in kept_keys:
            lost[segmentation.reasons.get(index, "unexplained")] += 1
    record.dropped_visible = dict(lost)
    return result.frames, record


def read_truth(
    frames64: NDArray[np.uint8],
    camera: cam.Camera,
    source_frames: Sequence[int],
    config: SegmentationConfig | None = None,
) -> NDArray[np.uint8]:
    """The frames ``source_frames`` of a pretreated walk as a flawless segmenter would give
    them through ``camera``'s clip: each frame's composited truth reduced to the working
    height and cut at half coverage, then the service's pretreatment (which drops a frame with
    too little of a person, as it would an upload's); network input ``(T, 64, 44)``.

    Why: the clip route changes a walk twice, by compositing it (the 64-row frame drawn at
    the camera's size, then reduced to the working size) and by segmenting the clip. Beside
    the clip reading of the same frames, this route tells the two apart: what it loses
    against the clean frames is the resampling, the rest is the segmentation.
    """
    factor = (config or SegmentationConfig()).working_height / camera.height
    shown = cam.walk_frames_shown(frames64)
    masks = cam.walk_masks(frames64)
    index_of = {source: t for t, source in enumerate(shown)}
    out = []
    for source in source_frames:
        truth = cam.truth_mask(masks, camera, index_of[source])
        frame = normalize_frame(cam.flawless_mask(truth, factor))
        if frame is not None:
            out.append(frame)
    if not out:
        return np.zeros((0, FRAME_HEIGHT, FRAME_WIDTH), np.uint8)
    return to_network_input(np.stack(out))


def widen(frames: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Network input ``(T, 64, 44)`` -> stored ``(T, 64, 64)`` with empty side columns."""
    out = np.zeros((frames.shape[0], frames.shape[1], FRAME_WIDTH + 2 * SIDE_CROP), np.uint8)
    out[:, :, SIDE_CROP : SIDE_CROP + FRAME_WIDTH] = frames
    return out


def _job(
    item: tuple[WalkKey, Path, int, SegmentationConfig | None],
) -> tuple[WalkKey, NDArray[np.uint8] | None, ClipWalk]:
    """One walk in a worker process (OpenCV single-threaded: the jobs are the parallelism)."""
    import cv2

    cv2.setNumThreads(1)
    key, path, seed, config = item
    camera, noise_seed = walk_camera(key, seed)
    frames, record = read_through_clip(load_walk(path), camera, noise_seed, config)
    record.key = str(key)
    return key, frames, record


def done_walks(out: Path) -> set[str]:
    """Keys of the walks ``out``'s manifest already records (a resumed build skips them)."""
    return {record.key for record in read_manifest(out)}


def build_clip_walks(
    walks: Sequence[tuple[WalkKey, Path]],
    out: Path,
    *,
    seed: int = 0,
    jobs: int = 1,
    config: SegmentationConfig | None = None,
) -> Iterator[ClipWalk]:
    """Read every walk of ``walks`` (keys and their files) through its clip into ``out``;
    yields each walk's record as it is written (the caller shows progress). Walks the
    manifest already holds are skipped, so an interrupted build resumes; a folder built with
    another segmentation working height raises ``ValueError`` (one folder, one route)."""
    height = (config or SegmentationConfig()).working_height
    records = read_manifest(out)
    built = {record.working_height for record in records} - {height}
    if built:
        raise ValueError(
            f"{out} holds clip walks segmented at {sorted(built)} rows, not {height}: "
            "write them to another folder"
        )
    if jobs > 1:  # the walks are the parallelism: one segmentation thread each (same masks)
        config = (config or SegmentationConfig()).model_copy(update={"threads": 1})
    out.mkdir(parents=True, exist_ok=True)
    skip = {record.key for record in records}
    todo = [(key, path, seed, config) for key, path in walks if str(key) not in skip]
    with (out / MANIFEST_NAME).open("a") as manifest:

        def written(key: WalkKey, frames: NDArray[np.uint8] | None, record: ClipWalk) -> ClipWalk:
            if frames is not None:
                write_walk(out, key, widen(frames))
            manifest.write(json.dumps(asdict(record), sort_keys=True) + "\n")
            manifest.flush()
            return record

        if jobs <= 1:
            for item in todo:
                yield written(*_job(item))
            return
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for result in pool.map(_job, todo, chunksize=1):
                yield written(*result)


def route_name(out: Path) -> str:
    """How a calibration names clip walks read from ``out``: the folder and the segmentation
    working height they were read at, on which a clip threshold depends."""
    heights = sorted({record.working_height for record in read_manifest(out)})
    if not heights:  # walks from elsewhere, without a clip-walks manifest
        return f"clip walks ({out.name})"
    return f"clip walks ({out.name}, segmented at {'/'.join(map(str, heights))} rows)"


def summarize(records: Sequence[ClipWalk]) -> dict[str, Any]:
    """Totals over a build's records: walks, refused clips and why, frames visible / kept,
    visible frames dropped by reason, mean IoU, seconds per walk."""
    refused = Counter(r.error.split(":", 1)[0] for r in records if r.error)
    dropped: Counter[str] = Counter()
    for record in records:
        dropped.update(record.dropped_visible)
    ious = [r.iou for r in records if r.error is None and np.isfinite(r.iou)]
    return {
        "walks": len(records),
        "refused": sum(refused.values()),
        "refused_by": dict(refused),
        "visible_frames": sum(r.visible for r in records),
        "kept_frames": sum(r.kept for r in records),
        "visible_dropped": dict(dropped),
        "mask_iou_mean": float(np.mean(ious)) if ious else float("nan"),
        "working_heights": sorted({r.working_height for r in records}),
        "seconds_per_walk": float(np.mean([r.seconds for r in records])) if records else 0.0,
    }


def read_manifest(out: Path) -> list[ClipWalk]:
    """Every record of ``out``'s manifest."""
    manifest = out / MANIFEST_NAME
    if not manifest.exists():
        return []
    return [
        ClipWalk(**json.loads(line)) for line in manifest.read_text().splitlines() if line.strip()
    ]
