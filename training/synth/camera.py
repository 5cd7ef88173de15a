"""Camera clips composited from known walks: what a camera would have filmed of a silhouette.

A walk's masks (real CASIA-B silhouettes, or the synthetic walker's) are filled with clothing,
stood in a static textured scene, moved across or towards the camera as their CASIA-B view
says, and the frames get sensor noise, slow lighting drift, sometimes a cast shadow, and a
lossy codec. The composited masks are the truth. Two users:

- the clip-route data (:mod:`gaitid.training.clip_walks`): held-out walks re-read through the
  service's own decoding and segmentation, so accuracy and the clip-route threshold are
  measured on what a camera user's uploads become;
- the tests and benchmarks of the segmentation front end (``tests/utils/clips.py``).

Torch-free (numpy and OpenCV only).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

#: A pretreated frame with at most this many person pixels holds hardly anyone: the composite
#: (and the training route that mimics it) does not draw it.
MIN_SHOWN_PIXELS = 50

#: Video containers :func:`encode_clip` writes, by OpenCV fourcc.
CODEC_SUFFIX = {"mp4v": ".mp4", "MJPG": ".avi"}


@dataclass(frozen=True)
class Clip:
    """A composited clip: RGB ``frames`` ``(T, H, W, 3)``, the person's ``truth`` masks
    ``(T, H, W)`` and the ``empty_scene`` ``(H, W, 3)`` the same camera sees without anyone."""

    frames: NDArray[np.uint8]
    truth: NDArray[np.bool_]
    empty_scene: NDArray[np.uint8]


@dataclass(frozen=True)
class Camera:
    """One composited camera clip of a walk: scene, framing, clothing, noise and codec.

    ``view`` is CASIA-B's angle between the walking direction and the camera axis (0: towards
    it, 90: across, 180: away): the person crosses ``1.3 |sin view|`` of the picture's width
    and grows (towards) or shrinks (away) by ``0.5 |cos view|`` of their height over the walk.
    """

    view: int = 90
    width: int = 640
    height: int = 480
    scene_seed: int = 0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel scene colour
    person_height: float = 0.55  # at the middle of the walk, of the picture's height
    direction: int = 1  # +1 left to right, -1 right to left
    garment_seed: int = 0
    contrast: float = 1.0  # 1: the usual warm garment; toward 0: the scene's own colours
    noise_sigma: float = 4.0
    drift: float = 0.15
    shadow: bool = False
    codec: str = "mp4v"  # OpenCV fourcc: mp4v (.mp4) or MJPG (.avi)

    @property
    def filename(self) -> str:
        """An upload name whose suffix matches the codec's container."""
        return f"clip{CODEC_SUFFIX[self.codec]}"


def draw_camera(view: str | int, rng: np.random.Generator) -> Camera:
    """A varied camera for a walk seen at ``view``: picture size, one of 8 scenes with a
    colour tint, the person 35-75 % of the height, either direction, striped clothing or (30 %)
    clothing at 30-60 % contrast to the scene, noise 2-8, lighting drift, a cast shadow on
    30 %, MJPG on 30 % and mp4v otherwise. Real cameras vary at least this much; the draws
    are seeded."""
    width, height = ((640, 480), (640, 480), (960, 540))[int(rng.integers(0, 3))]
    low_contrast = rng.random() < 0.3
    return Camera(
        view=int(view),
        width=width,
        height=height,
        scene_seed=int(rng.integers(0, 8)),
        tint=_tint(rng.uniform(0.8, 1.2, 3)),
        person_height=float(rng.uniform(0.35, 0.75)),
        direction=1 if rng.random() < 0.5 else -1,
        garment_seed=int(rng.integers(0, 1000)),
        contrast=float(rng.uniform(0.3, 0.6)) if low_contrast else 1.0,
        noise_sigma=float(rng.uniform(2, 8)),
        drift=float(rng.uniform(-0.15, 0.2)),
        shadow=bool(rng.random() < 0.3),
        codec="MJPG" if rng.random() < 0.3 else "mp4v",
    )


def _tint(values: NDArray[np.float64]) -> tuple[float, float, float]:
    red, green, blue = (float(v) for v in values)
    return red, green, blue


def crop(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The tight box of a non-empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def walk_frames_shown(frames64: NDArray[np.uint8], min_pixels: int = MIN_SHOWN_PIXELS) -> list[int]:
    """Indices of a pretreated walk's frames that hold enough of a person to be filmed: the
    frames :func:`walk_masks` keeps, in order (clip frame ``t`` is walk frame ``shown[t]``)."""
    return [i for i, f in enumerate(frames64) if (f > 127).sum() > min_pixels]


def walk_masks(
    frames64: NDArray[np.uint8], min_pixels: int = MIN_SHOWN_PIXELS
) -> list[NDArray[np.bool_]]:
    """Tight boolean crops of a pretreated walk's frames (real CASIA-B silhouettes); frames
    with hardly any person are left out, as a camera would not have shown them either."""
    return [crop(frames64[i] > 127) for i in walk_frames_shown(frames64, min_pixels)]


def textured_background(height: int, width: int, seed: int = 0) -> NDArray[np.uint8]:
    """A wall and a floor with texture and a few objects, in muted greens and greys."""
    rng = np.random.default_rng(seed)
    ys = np.linspace(0, 1, height)[:, None, None]
    xs = np.linspace(0, 1, width)[None, :, None]
    base = np.array([70, 110, 90]) + 40 * ys * np.array([1.0, 0.6, 0.8]) + 25 * xs
    texture = cv2.GaussianBlur(rng.normal(0, 18, (height, width, 3)).astype(np.float32), (0, 0), 2)
    scene = base + texture
    floor = int(height * 0.8)
    scene[floor:] = scene[floor:] * 0.8 + np.array([30, 30, 20])
    for _ in range(5):
        x, y = int(rng.integers(0, width - 30)), int(rng.integers(0, floor - 30))
        w, h = int(rng.integers(15, 50)), int(rng.integers(15, 60))
        colour = rng.uniform(40, 160, 3)
        colour[1] = max(colour[0], colour[1])  # never redder than green (the tests' segmenter)
        scene[y : y + h, x : x + w] = colour + texture[y : y + h, x : x + w]
    return np.clip(scene, 0, 255).astype(np.uint8)


def garment(height: int, width: int, seed: int = 0) -> NDArray[np.uint8]:
    """Striped, noisy clothing in warm colours (distinct from the scene, not uniform)."""
    rng = np.random.default_rng(seed + 1000)
    stripes = (np.arange(height)[:, None] // 6 % 2).astype(np.float32)
    cloth = np.empty((height, width, 3), np.float32)
    cloth[..., 0] = 150 + 60 * stripes
    cloth[..., 1] = 60 + 30 * (1 - stripes)
    cloth[..., 2] = 50 + 20 * stripes
    cloth += rng.normal(0, 10, cloth.shape)
    return np.clip(cloth, 0, 255).astype(np.uint8)


def paste(
    canvas: NDArray[np.bool_], mask: NDArray[np.bool_], height: int, centre: int, ground: int
) -> None:
    """Scale ``mask`` to ``height`` rows and stand it on ``ground`` at column ``centre``."""
    scaled = drawn_mask(mask, height)
    width = scaled.shape[1]
    top, left = ground - height, centre - width // 2
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, canvas.shape[0]), min(left + width, canvas.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    canvas[y0:y1, x0:x1] |= scaled[y0 - top : y1 - top, x0 - left : x1 - left]


def placement(camera: Camera, t: int, frames: int) -> tuple[int, int, int]:
    """Where ``camera`` films frame ``t`` of a ``frames``-long walk: the person's height in
    rows, the column of their centre and the row their feet stand on (``paste``'s
    arguments). The person crosses ``1.3 |sin view|`` of the width and grows or shrinks by
    ``0.5 |cos view|`` of their height, their feet lower in the picture as they come closer."""
    height, width = camera.height, camera.width
    angle = np.deg2rad(camera.view)
    travel = 1.3 * abs(np.sin(angle))
    growth = 0.5 * np.cos(angle)  # > 0: walking towards the camera
    progress = t / max(frames - 1, 1)
    size = camera.person_height * (1 + growth * (progress - 0.5))
    centre = round(width / 2 + (progress - 0.5) * travel * width * camera.direction)
    near = (size - camera.person_height * (1 - abs(growth) / 2)) / max(
        camera.person_height * abs(growth), 1e-6
    )
    ground_far, ground_near = int(height * 0.8), int(height * 0.97)
    ground = round(ground_far + (ground_near - ground_far) * float(np.clip(near, 0, 1)))
    return round(size * height), centre, ground


def truth_mask(masks: list[NDArray[np.bool_]], camera: Camera, t: int) -> NDArray[np.bool_]:
    """The composited truth of frame ``t`` alone (``camera_clip``'s ``truth[t]``, without
    rendering the clip)."""
    truth = np.zeros((camera.height, camera.width), bool)
    paste(truth, masks[t], *placement(camera, t, len(masks)))
    return truth


def flawless_mask(truth: NDArray[np.bool_], factor: float) -> NDArray[np.uint8]:
    """A composited truth mask as a flawless segmenter gives it: reduced by ``factor`` (the
    working height over the picture's, as ``gaitid.segment`` reduces a frame: area average,
    never enlarged) and cut at half coverage; 0/255. What the clip route does to a walk
    beyond its segmentation."""
    values = truth.astype(np.float32)
    if factor < 1:
        height, width = values.shape
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        values = np.asarray(cv2.resize(values, size, interpolation=cv2.INTER_AREA), np.float32)
    return np.where(values > 0.5, 255, 0).astype(np.uint8)


def drawn_mask(mask: NDArray[np.bool_], height: int) -> NDArray[np.bool_]:
    """A tight mask scaled to ``height`` rows as the composite draws a person (``paste``)."""
    width = max(1, round(mask.shape[1] * height / mask.shape[0]))
    resized = cv2.resize(
        mask.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR
    )
    return np.asarray(resized > 127)


def camera_clip(masks: list[NDArray[np.bool_]], camera: Camera, *, seed: int = 0) -> Clip:
    """``masks`` (tight crops of one walk, any size) composited as ``camera`` films them."""
    rng = np.random.default_rng(seed)
    height, width = camera.height, camera.width
    scene = textured_background(height, width, camera.scene_seed).astype(np.float32)
    scene = np.clip(scene * np.array(camera.tint, np.float32), 0, 255)
    cloth = garment(height, width, camera.garment_seed).astype(np.float32)
    if camera.contrast < 1.0:  # low contrast: clothing drawn toward the scene behind it
        cloth = camera.contrast * cloth + (1 - camera.contrast) * scene
    frames = len(masks)
    out = np.empty((frames, height, width, 3), np.uint8)
    truth = np.zeros((frames, height, width), bool)
    for t in range(frames):
        progress = t / max(frames - 1, 1)
        paste(truth[t], masks[t], *placement(camera, t, frames))
        frame = scene.copy()
        if camera.shadow and truth[t].any():
            cols = np.flatnonzero(truth[t].any(axis=0))
            rows = np.flatnonzero(truth[t].any(axis=1))
            foot = rows[-1]
            reach = round(0.6 * (rows[-1] - rows[0]))
            shade = np.zeros((height, width), bool)
            shade[max(0, foot - 6) : foot + 4, cols[0] : min(width, cols[-1] + reach)] = True
            frame[shade & ~truth[t]] *= 0.55
        frame[truth[t]] = cloth[truth[t]]
        frame *= 1.0 + camera.drift * progress
        frame += rng.normal(0, camera.noise_sigma, frame.shape)
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return Clip(out, truth, np.clip(scene, 0, 255).astype(np.uint8))


def write_video(
    frames_bgr: Iterable[NDArray[np.uint8]], fourcc: str, suffix: str, fps: int = 25
) -> bytes:
    """BGR frames as a video file (``fourcc`` in a ``suffix`` container), through OpenCV."""
    frames_bgr = list(frames_bgr)
    height, width = frames_bgr[0].shape[:2]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"walk{suffix}"
        code = cv2.VideoWriter.fourcc(*fourcc)
        writer = cv2.VideoWriter(str(path), code, fps, (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {suffix} with {fourcc} here")
        for frame in frames_bgr:
            writer.write(frame)
        writer.release()
        return path.read_bytes()


def encode_clip(frames: NDArray[np.uint8], codec: str = "mp4v", fps: int = 25) -> bytes:
    """RGB frames as a lossy video file: mp4v in .mp4 or MJPG in .avi, through OpenCV."""
    bgr = [cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) for frame in frames]
    return write_video(bgr, codec, CODEC_SUFFIX[codec], fps)


def fully_visible(truth: NDArray[np.bool_], margin: float = 0.01) -> bool:
    """Whether the person of a truth mask is in full view: inside the picture and clear of
    its border by ``margin`` of the picture's width (a person touching it is entering or
    leaving, which a segmenter working at a lower resolution cannot tell apart)."""
    if not truth.any():
        return False
    rows, cols = np.flatnonzero(truth.any(axis=1)), np.flatnonzero(truth.any(axis=0))
    height, width = truth.shape
    margin = max(2, round(margin * width))
    return bool(
        rows[0] > margin
        and cols[0] > margin
        and rows[-1] < height - 1 - margin
        and cols[-1] < width - 1 - margin
    )


def mask_iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    """Intersection over union of two masks (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
