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

import numpy as np
from numpy.typing import NDArray

from gaitid.training.synth.camera import (
    Camera,
    Clip,
    camera_clip,
    crop,
    encode_clip,
    fully_visible,
    garment,
    mask_iou,
    paste,
    textured_background,
    walk_masks,
)
from gaitid.training.synth.dataset import SynthConfig, render_walk, subject_identity

__all__ = [
    "Camera",
    "Clip",
    "PeopleClip",
    "Walker",
    "camera_clip",
    "crop",
    "crossing_clip",
    "encode_clip",
    "encode_mp4",
    "fully_visible",
    "mask_iou",
    "people_clip",
    "red_person_onnx",
    "walk_masks",
    "walker_masks",
]


def walker_masks(frames: int, seed: int = 0) -> list[NDArray[np.bool_]]:
    """Tight crops of a synthetic walker seen from the side, one per frame."""
    config = SynthConfig(
        subjects=1, min_frames=frames, max_frames=frames, width=320, height=240, noise=False
    )
    masks = render_walk(subject_identity(seed, 0), "nm-01", 90, np.random.default_rng(seed), config)
    return [crop(mask > 127) for mask in masks]


def crossing_clip(
    frames: int = 60,
    height: int = 240,
    width: int = 320,
    *,
    seed: int = 0,
    person_height: float = 0.55,
    towards_camera: bool = False,
    shrink: float = 1.0,
    noise_sigma: float = 4.0,
    drift: float = 0.15,
    shadow: bool = False,
    passer_by: bool = False,
    moving_box_only: bool = False,
    masks: list[NDArray[np.bool_]] | None = None,
) -> Clip:
    """A person crossing the picture left to right (entering and leaving it), or walking
    towards the camera (always in the middle, growing), composited over a static scene.
    ``shrink`` < 1: the crossing person also walks away, ending at that share of their first
    height (an oblique walk, as CASIA-B's 018 view)."""
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
            size = person_height * (1.0 + (shrink - 1.0) * progress)
            centre = round(-0.15 * width + 1.3 * width * progress)
        if not moving_box_only:
            paste(truth[t], person[t % len(person)], round(size * height), centre, ground)
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


def encode_mp4(frames: NDArray[np.uint8], fps: int = 25) -> bytes:
    """RGB frames as an mp4 (mp4v, lossy) through OpenCV."""
    return encode_clip(frames, "mp4v", fps)


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
            paste(
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
