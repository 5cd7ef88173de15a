"""Composited camera clips with known masks: the fixtures of the segmentation front end.

A walker's masks (``training.synth``, or any ``(T, h, w)`` masks such as real CASIA-B
silhouettes) are filled with a textured garment, moved across (or towards) a static textured
background, and the frames get sensor noise, slow lighting drift, optionally a cast shadow
and a second moving object, and lossy mp4 encoding. The composited masks are the truth the
segmentation is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from gaitid.training.synth.dataset import SynthConfig, render_walk, subject_identity
from tests.utils.uploads import write_video


@dataclass(frozen=True)
class Clip:
    frames: NDArray[np.uint8]  # (T, H, W, 3) RGB
    truth: NDArray[np.bool_]  # (T, H, W) the person
    empty_scene: NDArray[np.uint8]  # (H, W, 3) RGB, the same camera without anyone


def walker_masks(frames: int, seed: int = 0) -> list[NDArray[np.bool_]]:
    """Tight crops of a synthetic walker seen from the side, one per frame."""
    config = SynthConfig(
        subjects=1, min_frames=frames, max_frames=frames, width=320, height=240, noise=False
    )
    masks = render_walk(subject_identity(seed, 0), "nm-01", 90, np.random.default_rng(seed), config)
    return [_crop(mask > 127) for mask in masks]


def _crop(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


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
        colour[1] = max(colour[0], colour[1])  # never redder than green: see red_person_onnx
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


def crossing_clip(
    frames: int = 60,
    height: int = 240,
    width: int = 320,
    *,
    seed: int = 0,
    person_height: float = 0.55,
    towards_camera: bool = False,
    noise_sigma: float = 4.0,
    drift: float = 0.15,
    shadow: bool = False,
    passer_by: bool = False,
    moving_box_only: bool = False,
    masks: list[NDArray[np.bool_]] | None = None,
) -> Clip:
    """A person crossing the picture left to right (entering and leaving it), or walking
    towards the camera (always in the middle, growing), composited over a static scene."""
    rng = np.random.default_rng(seed)
    scene = textured_background(height, width, seed)
    cloth = garment(height, width, seed)
    person = masks or walker_masks(frames, seed)
    out = np.empty((frames, height, width, 3), np.uint8)
    truth = np.zeros((frames, height, width), bool)
    ground = int(height * 0.9)
    for t in range(frames):
        progress = t / max(frames - 1, 1)
        if towards_camera:
            size = person_height * (0.7 + 0.5 * progress)
            centre = width // 2
        else:
            size = person_height
            centre = round(-0.15 * width + 1.3 * width * progress)
        if not moving_box_only:
            _paste(truth[t], person[t % len(person)], round(size * height), centre, ground)
        frame = scene.astype(np.float32)
        if shadow and truth[t].any():
            shade = np.zeros((height, width), bool)
            cols = np.flatnonzero(truth[t].any(axis=0))
            shade[ground - 4 : ground + 6, cols[0] + 10 : min(width, cols[-1] + 60)] = True
            frame[shade & ~truth[t]] *= 0.6
        if passer_by or moving_box_only:
            # a wide object (a cart on a shelf) crossing right to left, above the person
            bx = round(width * (1.1 - 1.3 * progress))
            box_w, box_h = width // 6, height // 10
            top = height // 10
            frame[top : top + box_h, max(0, bx) : max(0, bx + box_w)] = (40, 60, 170)
        frame[truth[t]] = cloth[truth[t]]
        frame *= 1.0 + drift * progress  # slow lighting drift
        frame += rng.normal(0, noise_sigma, frame.shape)
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return Clip(out, truth, scene)


def _paste(
    canvas: NDArray[np.bool_], mask: NDArray[np.bool_], height: int, centre: int, ground: int
) -> None:
    """Scale ``mask`` to ``height`` rows and stand it on ``ground`` at column ``centre``."""
    width = max(1, round(mask.shape[1] * height / mask.shape[0]))
    resized = cv2.resize(
        mask.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR
    )
    scaled = resized > 127
    top, left = ground - height, centre - width // 2
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, canvas.shape[0]), min(left + width, canvas.shape[1])
    if y1 <= y0 or x1 <= x0:
        return
    canvas[y0:y1, x0:x1] |= scaled[y0 - top : y1 - top, x0 - left : x1 - left]


def encode_mp4(frames: NDArray[np.uint8], fps: int = 25) -> bytes:
    """RGB frames as an mp4 (mp4v, lossy) through OpenCV."""
    return encode_clip(frames, "mp4v", fps)


def mask_iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def red_person_onnx(path: Path, size: tuple[int, int] | None = None) -> Path:
    """A tiny ONNX "person segmenter" with the ``gaitid.segment`` contract: probability
    ``sigmoid(40 (R - G - 0.2))``, which finds the red garment of these clips and nothing in
    their scenes. ``size`` (H, W) fixes the input size; ``None`` leaves it dynamic."""
    import onnx
    from onnx import TensorProto, helper

    height, width = size if size is not None else ("H", "W")
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 3, 1, 1], [40.0, -40.0, 0.0])
    bias = helper.make_tensor("b", TensorProto.FLOAT, [1], [-8.0])
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w", "b"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["person"]),
        ],
        "red_person",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("person", TensorProto.FLOAT, [1, 1, height, width])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------------- camera scenes


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
    angle = np.deg2rad(camera.view)
    travel = 1.3 * abs(np.sin(angle))
    growth = 0.5 * np.cos(angle)  # > 0: walking towards the camera
    out = np.empty((frames, height, width, 3), np.uint8)
    truth = np.zeros((frames, height, width), bool)
    ground_far, ground_near = int(height * 0.8), int(height * 0.97)
    for t in range(frames):
        progress = t / max(frames - 1, 1)
        size = camera.person_height * (1 + growth * (progress - 0.5))
        span = travel * width
        offset = (progress - 0.5) * span * camera.direction
        centre = round(width / 2 + offset)
        near = (size - camera.person_height * (1 - abs(growth) / 2)) / max(
            camera.person_height * abs(growth), 1e-6
        )
        ground = round(ground_far + (ground_near - ground_far) * float(np.clip(near, 0, 1)))
        _paste(truth[t], masks[t], round(size * height), centre, ground)
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


def encode_clip(frames: NDArray[np.uint8], codec: str = "mp4v", fps: int = 25) -> bytes:
    """RGB frames as a lossy video file: mp4v in .mp4 or MJPG in .avi, through OpenCV."""
    suffix = {"mp4v": ".mp4", "MJPG": ".avi"}[codec]
    bgr = (cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) for frame in frames)
    return write_video(bgr, codec, suffix, fps)


def walk_masks(frames64: NDArray[np.uint8], min_pixels: int = 50) -> list[NDArray[np.bool_]]:
    """Tight boolean crops of a pretreated walk's frames (real CASIA-B silhouettes)."""
    return [_crop(f > 127) for f in frames64 if (f > 127).sum() > min_pixels]


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


# ---------------------------------------------------------------------------- several people


@dataclass(frozen=True)
class Walker:
    """One person of a :func:`people_clip`: their walk's masks (tight crops, one per frame of
    theirs), where and when they walk, and what they wear.

    The centre moves from ``x_from`` to ``x_to`` (shares of the width) over the walk's
    frames, from clip frame ``start``; ``stands`` ``(a, b)``: from their ``a``-th step, they
    stand still on that pose for ``b - a`` frames, then walk on. ``ground`` is where the feet
    are (share of the height): nearer people stand lower and are drawn over farther ones.
    """

    masks: list[NDArray[np.bool_]]
    x_from: float
    x_to: float
    start: int = 0
    person_height: float = 0.5
    ground: float = 0.9
    colour: tuple[int, int, int] = (200, 70, 60)
    stands: tuple[int, int] | None = None


@dataclass(frozen=True)
class PeopleClip:
    frames: NDArray[np.uint8]  # (T, H, W, 3) RGB
    truths: list[NDArray[np.bool_]]  # per walker, (T, H, W): their visible pixels
    empty_scene: NDArray[np.uint8]

    def overlapping(self, index: int, margin: int = 12) -> NDArray[np.bool_]:
        """Frames where walker ``index``'s box comes within ``margin`` pixels of another's."""
        boxes = [_boxes(truth, margin) for truth in self.truths]
        mine = boxes[index]
        near = np.zeros(len(self.frames), bool)
        for other, theirs in enumerate(boxes):
            if other != index:
                near |= [_touch(a, b) for a, b in zip(mine, theirs, strict=True)]
        return near


def people_clip(
    walkers: list[Walker],
    frames: int,
    *,
    height: int = 480,
    width: int = 640,
    seed: int = 0,
    noise_sigma: float = 3.0,
) -> PeopleClip:
    """Several people composited over one static textured scene, nearest drawn last."""
    rng = np.random.default_rng(seed)
    scene = textured_background(height, width, seed).astype(np.float32)
    order = sorted(range(len(walkers)), key=lambda i: walkers[i].ground)  # far to near
    out = np.empty((frames, height, width, 3), np.uint8)
    truths = [np.zeros((frames, height, width), bool) for _ in walkers]
    texture = rng.normal(0, 12, (height, width, 3)).astype(np.float32)
    stripes = (np.arange(height)[:, None, None] // 7 % 2).astype(np.float32)
    for t in range(frames):
        frame = scene.copy()
        for i in order:
            walker = walkers[i]
            step = t - walker.start
            a, b = walker.stands or (0, 0)
            if not 0 <= step < len(walker.masks) + (b - a):
                continue
            # the walk's frame: paused at ``a`` while standing, resumed after ``b``
            moved = step if step < a else a if step < b else step - (b - a)
            pose = moved
            progress = moved / max(len(walker.masks) - 1, 1)
            centre = round(width * (walker.x_from + (walker.x_to - walker.x_from) * progress))
            person = np.zeros((height, width), bool)
            _paste(
                person,
                walker.masks[pose],
                round(walker.person_height * height),
                centre,
                round(walker.ground * height),
            )
            for j in range(len(walkers)):
                truths[j][t] &= ~person  # hidden behind this nearer person
            truths[i][t] = person
            cloth = np.asarray(walker.colour, np.float32) * (0.8 + 0.25 * stripes) + texture
            frame[person] = cloth[person]
        frame += rng.normal(0, noise_sigma, frame.shape)
        out[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return PeopleClip(out, truths, np.clip(scene, 0, 255).astype(np.uint8))


def _boxes(truth: NDArray[np.bool_], margin: int) -> list[tuple[int, int, int, int] | None]:
    boxes: list[tuple[int, int, int, int] | None] = []
    for mask in truth:
        if not mask.any():
            boxes.append(None)
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes.append((cols[0] - margin, rows[0] - margin, cols[-1] + margin, rows[-1] + margin))
    return boxes


def _touch(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int] | None) -> bool:
    if a is None or b is None:
        return False
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]
