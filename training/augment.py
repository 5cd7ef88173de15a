"""Segmentation-style degradation of training walks: invariance to how a silhouette was made.

Why: the shipped model learnt CASIA-B's silhouettes only, and the same walk segmented by
``gaitid.segment`` from a camera clip (mask IoU ~0.85 against CASIA-B's) embedded at cosine
0.3-0.4 to its clean self. Perfect masks through our pretreatment lose nothing, so what hurts
is mask *style*: edges, holes, thickness, shadows at the feet, resolution, alignment. Training
on walks whose masks were re-made the ways a segmenter errs teaches the network to ignore them
(RobustGait, WACV 2026: extractor bias dominates; QAGait, AAAI 2024: silhouette quality).

What one degraded walk goes through, per frame, on the 64x44 network crop put back on its
64x64 canvas:

1. *Resolution*: the frame is resized to a camera-like person height (``min_height`` to
   ``max_height`` pixels, one draw per walk) and binarised there, as a segmenter working on a
   240-row frame sees a person of 60-200 rows (the service now works at 480 rows, where a
   person has twice as many: the drawn heights are the harder, coarser end).
2. *Segmenter style*, drawn once per walk (a segmenter errs the same way through one clip)
   and jittered per frame (temporal flicker): erosion or dilation by up to ``morph_px``
   pixels of that height; blur then re-threshold at a level in 0.3-0.7 (rounded or thinned
   limbs, merged legs); a smooth noise field added before the threshold (ragged edges).
3. *Holes and blobs*: ellipses cut out of the body (clothes that match the background) with
   probability ``holes`` per frame, and a shadow band glued to the feet with probability
   ``shadow`` per walk (present on most of its frames).
4. *The service's own pretreatment* (``gaitid.preprocess.pretreat_frame``: crop rows,
   height 64, centre by mass), so every error above also moves the crop and the scale exactly
   as it would for an upload; then a per-frame shift of up to ``shift_px`` and a scale change of
   up to ``scale`` (alignment jitter).

``kind: route`` replaces steps 1-4 with exactly what the clip route does to a walk beyond its
segmentation (``bench/clip_route.py``'s truth route, which carries most of the route's mask
loss): a camera is drawn per walk (``gaitid.training.synth.camera.draw_camera``: picture size
and the person's height in it), every frame's mask is drawn at that height as the composite
draws it, reduced to the segmentation's working height and cut at half coverage
(``camera.flawless_mask``), then pretreated. No style, holes, shadow or jitter.

Frames dropped by a segmenter are the window sampler's part (``drop_frames`` in
:func:`training.torch_data.sample_window`). A degraded frame that loses its person (eroded
away) keeps its clean original: the service would have dropped it, not fed it blank.

Cost: ~0.2 ms a frame on one core (``bench/train_loader.py``), next to ~1.2 s a lite step.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gaitid.preprocess import NORMALIZED_SIZE, SIDE_CROP, pretreat_frame
from gaitid.segment import SegmentationConfig
from gaitid.training.synth import camera as cam

#: The service's working height, read once (not per walk in the batch loop).
_WORKING_HEIGHT = SegmentationConfig().working_height

__all__ = ["AugmentConfig", "degrade_walk"]


class AugmentConfig(BaseModel):
    """How often and how hard training walks are degraded (``data.augment`` of the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: share of training walks degraded (0 = off, every walk as CASIA-B made it)
    probability: float = Field(default=0.0, ge=0, le=1)
    #: ``style``: a segmenter's errors (steps 1-4); ``route``: the clip route's resampling
    kind: Literal["style", "route"] = "style"
    #: person height (pixels) the mask is re-made at, one draw per walk
    min_height: int = Field(default=48, ge=16, le=256)
    max_height: int = Field(default=160, ge=16, le=256)
    #: largest erosion (-) / dilation (+) radius, pixels at that height
    morph_px: int = Field(default=3, ge=0, le=8)
    #: largest Gaussian sigma before re-thresholding, pixels at that height
    blur_sigma: float = Field(default=2.5, ge=0, le=8)
    #: largest amplitude of the smooth noise added before the threshold (0..1 mask scale)
    edge_noise: float = Field(default=0.35, ge=0, le=1)
    #: probability per frame of 1-3 holes cut in the body
    holes: float = Field(default=0.3, ge=0, le=1)
    #: probability per walk of a shadow band at the feet
    shadow: float = Field(default=0.25, ge=0, le=1)
    #: largest shift (pixels of the 64-row frame) and relative scale change per frame
    shift_px: float = Field(default=2.0, ge=0, le=8)
    scale: float = Field(default=0.06, ge=0, le=0.3)
    #: probability that a window skips frames (a segmenter dropped some), and their share
    drop_frames: float = Field(default=0.3, ge=0, le=1)
    max_dropped: float = Field(default=0.25, ge=0, lt=1)

    @model_validator(mode="after")
    def _heights_ordered(self) -> AugmentConfig:
        if self.min_height > self.max_height:
            raise ValueError(
                f"augment.min_height ({self.min_height}) exceeds max_height ({self.max_height})"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.probability > 0


class _Style:
    """The per-walk draw of a segmenter's habits (step 2 of the module docstring)."""

    def __init__(self, config: AugmentConfig, rng: np.random.Generator) -> None:
        self.height = int(rng.integers(config.min_height, config.max_height + 1))
        self.morph = int(rng.integers(-config.morph_px, config.morph_px + 1))
        self.sigma = float(rng.uniform(0, config.blur_sigma))
        self.level = float(rng.uniform(0.3, 0.7))
        self.noise = float(rng.uniform(0, config.edge_noise))
        self.shadow = bool(rng.random() < config.shadow)
        self.shadow_side = 1 if rng.random() < 0.5 else -1
        self.shadow_length = float(rng.uniform(0.3, 1.0))  # of the body's height


def _ellipse(radius: int) -> NDArray[np.uint8]:
    size = 2 * radius + 1
    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)), np.uint8)


def _remake(
    frame64: NDArray[np.uint8], style: _Style, config: AugmentConfig, rng: np.random.Generator
) -> NDArray[np.float32]:
    """Steps 1-3: the 64x64 frame re-segmented at ``style.height``; float 0..255."""
    size = style.height
    mask = cv2.resize(frame64, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    mask /= 255.0
    sigma = max(0.0, style.sigma + rng.normal(0, 0.3))
    if sigma > 0.3:
        mask = np.asarray(cv2.GaussianBlur(mask, (0, 0), sigma), np.float32)
    if style.noise > 0:  # only near the outline: ragged edges, not specks in the scene
        coarse = rng.normal(0, style.noise, (max(2, size // 8), max(2, size // 8)))
        field = cv2.resize(coarse.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        solid = (mask > 0.5).astype(np.uint8)
        reach = _ellipse(max(1, size // 40))
        band = cv2.dilate(solid, reach) != cv2.erode(solid, reach)
        mask[band] += field[band]
    level = float(np.clip(style.level + rng.normal(0, 0.05), 0.15, 0.85))
    binary = (mask > level).astype(np.uint8)
    morph = style.morph + int(rng.integers(-1, 2)) * int(rng.random() < 0.3)
    if morph > 0:
        binary = np.asarray(cv2.dilate(binary, _ellipse(morph)), np.uint8)
    elif morph < 0:
        binary = np.asarray(cv2.erode(binary, _ellipse(-morph)), np.uint8)
    ys, xs = np.nonzero(binary)
    if ys.size == 0:
        return binary.astype(np.float32)
    top, bottom = int(ys.min()), int(ys.max())
    body = bottom - top + 1
    if rng.random() < config.holes:
        for _ in range(int(rng.integers(1, 4))):
            pick = int(rng.integers(0, ys.size))
            axes = (
                max(1, int(body * rng.uniform(0.02, 0.07))),
                max(1, int(body * rng.uniform(0.02, 0.1))),
            )
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(binary, (int(xs[pick]), int(ys[pick])), axes, angle, 0, 360, 0, -1)
    if style.shadow and rng.random() < 0.85:
        feet = xs[ys >= bottom - max(1, body // 20)]
        start = int(feet.min() if style.shadow_side < 0 else feet.max())
        length = int(body * style.shadow_length * rng.uniform(0.8, 1.2))
        thick = max(1, int(body * rng.uniform(0.015, 0.04)))
        end = start + style.shadow_side * length
        cv2.rectangle(binary, (start, bottom - thick), (end, bottom), 1, -1)
    return binary.astype(np.float32) * 255.0


def _jitter(
    frame64: NDArray[np.uint8], config: AugmentConfig, rng: np.random.Generator
) -> NDArray[np.uint8]:
    """Step 4's alignment jitter: a small scale change about the centre and a shift."""
    scale = 1.0 + float(rng.uniform(-config.scale, config.scale))
    dx, dy = rng.uniform(-config.shift_px, config.shift_px, 2)
    centre = NORMALIZED_SIZE / 2.0
    matrix = np.array(
        [[scale, 0.0, (1 - scale) * centre + dx], [0.0, scale, (1 - scale) * centre + dy * 0.5]],
        np.float32,
    )
    warped = cv2.warpAffine(
        frame64, matrix, (NORMALIZED_SIZE, NORMALIZED_SIZE), flags=cv2.INTER_LINEAR
    )
    return np.asarray(warped, np.uint8)


def degrade_walk(
    walk: NDArray[np.uint8], config: AugmentConfig, rng: np.random.Generator
) -> NDArray[np.uint8]:
    """One walk's ``(T, 64, 44)`` network crops as another segmenter might have made them."""
    if config.kind == "route":
        return route_walk(walk, rng)
    style = _Style(config, rng)
    out = np.empty_like(walk)
    canvas = np.zeros((NORMALIZED_SIZE, NORMALIZED_SIZE), np.uint8)
    for t, frame in enumerate(walk):
        canvas[:, SIDE_CROP : SIDE_CROP + frame.shape[1]] = frame
        remade = _remake(canvas, style, config, rng)
        normalised = pretreat_frame(remade)
        if normalised is None:  # eroded away: the service drops such a frame, keep the clean one
            out[t] = frame
            continue
        jittered = _jitter(normalised, config, rng)
        out[t] = jittered[:, SIDE_CROP : SIDE_CROP + frame.shape[1]]
    return out


def route_walk(walk: NDArray[np.uint8], rng: np.random.Generator) -> NDArray[np.uint8]:
    """One walk's ``(T, 64, 44)`` crops through a drawn camera's resampling (``kind: route``);
    a frame the pretreatment would drop keeps its clean original."""
    camera = cam.draw_camera(90, rng)  # the view only moves the person; size is what counts
    rows = max(1, round(camera.person_height * camera.height))
    factor = _WORKING_HEIGHT / camera.height
    out = np.empty_like(walk)
    for t, frame in enumerate(walk):
        person = frame > 127
        if person.sum() <= cam.MIN_SHOWN_PIXELS:  # the composite would not have drawn it
            out[t] = frame
            continue
        drawn = np.pad(cam.drawn_mask(cam.crop(person), rows), 2)
        normalised = pretreat_frame(cam.flawless_mask(drawn, factor).astype(np.float32))
        out[t] = (
            frame if normalised is None else normalised[:, SIDE_CROP : SIDE_CROP + frame.shape[1]]
        )
    return out
