"""From 3D primitives to camera frames: projection, rasterisation and segmentation noise.

The camera sits at azimuth ``view`` around the walker (0 deg: in front, the walker comes
towards it; 90 deg: at its left side; 180 deg: behind), looks down by a small elevation and
projects each frame orthographically (weak perspective: one scale per frame). The walker's
root follows a straight track, so its scale grows or shrinks with its distance to the camera
(strongly at 0 and 180 deg, as in CASIA-B). Every primitive projects to a convex polygon,
which OpenCV fills with sub-pixel precision; the union is the silhouette.

Then the mask is corrupted the way background subtraction corrupts real silhouettes: the
boundary is dilated or eroded, bumps and bites appear along it, holes open inside, a band of
the legs goes missing, a shadow sticks to the feet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from gaitid.training.synth.kinematics import Capsule, FloatArray, Primitive

#: Fixed-point bits OpenCV uses for sub-pixel polygon vertices.
_SHIFT: Final = 3
_CIRCLE: Final = np.stack(
    [
        np.cos(np.linspace(0, 2 * np.pi, 12, endpoint=False)),
        np.sin(np.linspace(0, 2 * np.pi, 12, endpoint=False)),
    ],
    axis=-1,
)  # [12, 2]
#: Walking speed in stature units per frame (1.3 m/s for 1.7 m at 25 fps).
_SPEED: Final = 0.03
#: Distance of the track's middle from the camera, in statures.
_DISTANCE: Final = 5.5
#: Longest stretch of the track that is filmed, in statures (bounds the scale change).
_TRACK: Final = 2.6


@dataclass(frozen=True)
class Shot:
    """How one walk is filmed: view azimuth, elevation (degrees) and image size."""

    view_deg: float
    elevation_deg: float
    stature_px: float  # body height in pixels at the middle of the track
    width: int = 320
    height: int = 240


def camera_axes(view_deg: float, elevation_deg: float) -> tuple[FloatArray, FloatArray]:
    """Image right and up directions in world coordinates for a camera at ``view_deg``."""
    view, elevation = np.deg2rad(view_deg), np.deg2rad(elevation_deg)
    to_camera = np.array(
        [np.cos(view) * np.cos(elevation), np.sin(view) * np.cos(elevation), np.sin(elevation)]
    )
    forward = -to_camera
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return right, up


def _placement(n_frames: int, shot: Shot) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-frame scale (px per stature) and image position of the ground below the pelvis."""
    view = np.deg2rad(shot.view_deg)
    travelled = _SPEED * (np.arange(n_frames) - 0.5 * (n_frames - 1))
    travelled = np.clip(travelled, -0.5 * _TRACK, 0.5 * _TRACK)
    depth = _DISTANCE - travelled * np.cos(view)  # the walker approaches a camera in front
    scale = shot.stature_px * _DISTANCE / depth
    lateral = -travelled * np.sin(view)  # image x of the walker drifts across the frame
    x = 0.5 * shot.width + 0.35 * shot.stature_px * lateral
    ground_y = 0.45 * shot.height + 0.6 * scale
    return scale, x, ground_y


def project(primitives: list[Primitive], shot: Shot) -> list[NDArray[np.int32]]:
    """Polygon vertices of every primitive in fixed-point pixels, each ``[T, P, 2]``."""
    right, up = camera_axes(shot.view_deg, shot.elevation_deg)
    n_frames = (
        primitives[0].a.shape[0]
        if isinstance(primitives[0], Capsule)
        else (primitives[0].points.shape[0])
    )
    scale, x0, y0 = _placement(n_frames, shot)

    def to_image(points: FloatArray) -> FloatArray:
        # [T, P, 3] -> [T, P, 2]
        u = points @ right
        v = points @ up
        s = scale[:, None]
        return np.stack([x0[:, None] + s * u, y0[:, None] - s * v], axis=-1)

    polygons = []
    for primitive in primitives:
        if isinstance(primitive, Capsule):
            ends = to_image(np.stack([primitive.a, primitive.b], axis=1))  # [T, 2, 2]
            ra = primitive.ra * scale[:, None, None]
            rb = primitive.rb * scale[:, None, None]
            # a sphere projects to a disc: [T, 12, 2] around each end -> [T, 24, 2]
            points = np.concatenate(
                [ends[:, :1] + ra * _CIRCLE[None], ends[:, 1:] + rb * _CIRCLE[None]], axis=1
            )
        else:
            points = to_image(primitive.points)
        polygons.append(np.rint(points * (1 << _SHIFT)).astype(np.int32))
    return polygons


def rasterize(polygons: list[NDArray[np.int32]], shot: Shot) -> NDArray[np.uint8]:
    """Fill the convex hull of every polygon, frame by frame -> uint8 0/255 ``[T, H, W]``."""
    n_frames = polygons[0].shape[0]
    masks = np.zeros((n_frames, shot.height, shot.width), np.uint8)
    for t in range(n_frames):
        frame = masks[t]
        for polygon in polygons:
            hull = cv2.convexHull(polygon[t])
            cv2.fillConvexPoly(frame, hull, 255, lineType=cv2.LINE_8, shift=_SHIFT)
    return masks


@dataclass(frozen=True)
class NoiseLevel:
    """Probabilities and sizes of the segmentation defects (per frame unless stated)."""

    dilate: float = 0.25
    erode: float = 0.2
    edge_bumps: float = 4.0  # mean number of bumps/bites on the boundary
    hole: float = 0.15
    missing_band: float = 0.06
    shadow: float = 0.3  # per walk: a shadow blob at the feet
    stray_blob: float = 0.02


def segmentation_noise(
    masks: NDArray[np.uint8], shot: Shot, rng: np.random.Generator, level: NoiseLevel
) -> NDArray[np.uint8]:
    """Corrupt clean masks ``[T, H, W]`` (in place and returned) like background subtraction."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    shadow = rng.random() < level.shadow
    shadow_width = rng.uniform(0.06, 0.16) * shot.stature_px
    shadow_side = rng.uniform(-0.08, 0.08) * shot.stature_px
    for t in range(masks.shape[0]):
        frame = masks[t]
        rows = np.flatnonzero(frame.any(axis=1))
        if rows.size == 0:
            continue
        top, bottom = int(rows[0]), int(rows[-1])
        cols = np.flatnonzero(frame[top : bottom + 1].any(axis=0))
        left, right = int(cols[0]), int(cols[-1])
        height = bottom - top + 1
        if shadow:
            centre = (int((left + right) / 2 + shadow_side), bottom - 1)
            axes = (int(shadow_width * rng.uniform(0.8, 1.1)), max(1, int(0.015 * height)))
            cv2.ellipse(frame, centre, axes, 0.0, 0.0, 360.0, 255, -1)
        draw = rng.random()
        if draw < level.dilate:
            cv2.dilate(frame, kernel, dst=frame)
        elif draw < level.dilate + level.erode:
            cv2.erode(frame, kernel, dst=frame)
        boundary = frame.astype(bool) & ~cv2.erode(frame, kernel).astype(bool)
        ys, xs = np.nonzero(boundary)
        for _ in range(rng.poisson(level.edge_bumps)):
            if ys.size == 0:
                break
            i = int(rng.integers(ys.size))
            radius = int(rng.integers(1, 4))
            colour = 255 if rng.random() < 0.5 else 0
            cv2.circle(frame, (int(xs[i]), int(ys[i])), radius, colour, -1)
        if rng.random() < level.hole:
            y = int(rng.uniform(top + 0.2 * height, top + 0.6 * height))
            x = int(rng.uniform(left, right + 1))
            axes = (int(rng.integers(1, 4)), int(rng.integers(1, 5)))
            cv2.ellipse(frame, (x, y), axes, 0.0, 0.0, 360.0, 0, -1)
        if rng.random() < level.missing_band:
            y = int(rng.uniform(top + 0.55 * height, bottom - 0.1 * height))
            band = int(rng.integers(2, max(3, int(0.06 * height))))
            x = int(rng.uniform(left, right + 1))
            frame[
                y : y + band, max(0, x - int(rng.integers(3, 15))) : x + int(rng.integers(3, 15))
            ] = 0
        if rng.random() < level.stray_blob:
            y = int(rng.uniform(top + 0.3 * height, bottom))
            x = int(np.clip(rng.uniform(left - 20, right + 20), 0, shot.width - 1))
            cv2.circle(frame, (x, y), int(rng.integers(1, 4)), 255, -1)
    return masks
