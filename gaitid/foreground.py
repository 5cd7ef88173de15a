"""Background subtraction: a static camera's working frames -> each frame's foreground mask.

Steps 1 and 2 of the segmentation (``gaitid.segment`` says what they do and why): the empty
scene learnt from the clip (:func:`learn_background`, unless the caller supplies one), each
frame's foreground against it with lighting drift and cast shadows removed
(:func:`foreground`), and the morphological cleanup (:func:`clean`). Every function here
depends on one frame, or on the per-pixel samples of the background, only: ``gaitid.segment``
runs them on ``config.threads`` threads, and the masks are the same with one.

The medians are ``gaitid.medians``' exact ones (NumPy's values, faster; BENCHMARKS.md,
"Segmentation speed: exact medians").
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Final, TypeVar

import cv2
import numpy as np
from numpy.typing import NDArray

from gaitid.medians import median, plane_lower_median, plane_median

if TYPE_CHECKING:
    from gaitid.segment import SegmentationConfig

#: A pixel foreground in more than this share of the background samples may have been taken
#: for background by the plain median: the background is then re-estimated without it.
_STANDING_SHARE: Final = 0.3


def learn_background(
    images: Sequence[NDArray[np.uint8]],
    config: SegmentationConfig,
    pool: ThreadPoolExecutor,
) -> NDArray[np.float32]:
    """The empty scene learnt from the clip's own frames: the per-pixel median of up to
    ``background_samples`` of them, then refined where a person stood (its medians computed in
    bands of rows on ``pool``'s threads)."""
    height, width = images[0].shape[:2]
    count = min(len(images), config.background_samples)
    picks = np.linspace(0, len(images) - 1, count).round().astype(int)
    samples = np.stack([images[i] for i in picks])
    bands = _row_bands(height, config.threads)
    background = np.concatenate(
        list(pool.map(lambda rows: plane_median(samples[:, rows]), bands))
    ).astype(np.float32)
    # A plain median takes the person for background wherever they stand in over half of
    # the samples (a slow or oblique walker, someone close to the camera). Then refine it:
    # the median of each pixel over the samples where it was *not* foreground, so a pixel
    # needs the background visible at some time, not most of the time. Judged at half size.
    for _ in range(config.background_passes):
        half = (max(1, width // 2), max(1, height // 2))
        small = np.stack([cv2.resize(s, half, interpolation=cv2.INTER_AREA) for s in samples])
        reference = cv2.resize(background, half, interpolation=cv2.INTER_AREA)
        found = pool.map(foreground, small, itertools.repeat(reference), itertools.repeat(config))
        hidden_small = np.stack(list(found)) > 0
        if hidden_small.mean(axis=0).max() < _STANDING_SHARE:
            break  # nobody stood anywhere long enough to be taken for background
        grown = [cv2.dilate(h.astype(np.uint8), _ellipse(5)) for h in hidden_small]
        hidden = np.stack(
            [cv2.resize(h, (width, height), interpolation=cv2.INTER_NEAREST) for h in grown]
        ).astype(bool)
        refined = pool.map(
            _masked_median,
            [samples[:, rows] for rows in bands],
            [hidden[:, rows] for rows in bands],
            [background[rows] for rows in bands],
        )
        background = np.concatenate(list(refined))
    return background


def _row_bands(height: int, count: int) -> list[slice]:
    """``count`` contiguous bands of ``height`` rows (fewer when there are fewer rows): the
    background's per-pixel medians are independent, so bands give the same values."""
    edges = np.linspace(0, height, min(count, height) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in itertools.pairwise(edges) if b > a]


def _masked_median(
    samples: NDArray[np.uint8], hidden: NDArray[np.bool_], fallback: NDArray[np.float32]
) -> NDArray[np.float32]:
    """Per pixel and channel, the lower median of ``samples`` where not ``hidden`` (``fallback``
    where a pixel is hidden in every sample)."""
    picked, visible = plane_lower_median(samples, hidden)
    return np.where(visible[:, :, None], picked.astype(np.float32), fallback)


def subtract(
    frame: NDArray[np.uint8], background: NDArray[np.float32], config: SegmentationConfig
) -> NDArray[np.bool_]:
    """Foreground of one frame against the background, lighting drift and shadows removed."""
    return foreground(frame, background, config) > 0


def foreground(
    frame: NDArray[np.uint8], background: NDArray[np.float32], config: SegmentationConfig
) -> NDArray[np.uint8]:
    """:func:`subtract` as a 0/1 ``uint8`` mask (what the morphology takes)."""
    current = frame.astype(np.float32) + 1.0
    reference = background + 1.0
    ratio = current / reference
    # per-channel gain from a pixel subsample: background pixels dominate the median
    subsample = np.moveaxis(ratio[::2, ::2], 2, 0).reshape(3, -1)
    gain = np.array([median(channel) for channel in subsample], np.float32)
    ratio = _per_channel_divide(ratio, gain)
    diff = channel_max(np.abs(_per_channel_divide(current, gain) - reference))
    threshold = max(config.min_threshold, config.noise_factor * float(median(diff)))
    # hysteresis: pixels over half the threshold count where they touch pixels over it, so
    # clothing close to the background stays joined to the rest of the person
    strong = (diff > threshold).astype(np.uint8)
    weak = (diff > config.hysteresis * threshold).astype(np.uint8)
    count, labels = cv2.connectedComponents(weak, connectivity=8)
    if count > 1:
        seeded = np.zeros(count, bool)
        seeded[labels[strong > 0]] = True
        seeded[0] = False
        mask = seeded[labels]
    else:
        mask = strong > 0
    if mask.any():
        # the outline sits halfway between the background and the person's own contrast:
        # tight for clothing that stands out, still whole for clothing that barely does
        contrast = float(median(diff[mask]))
        edge = max(config.hysteresis * threshold, config.edge_level * contrast)
        near = cv2.dilate(mask.astype(np.uint8), _ellipse(3)) > 0
        mask = near & (diff > edge)
    # shadows are judged on a smoothed ratio: pixel noise would break the equal-darkening test
    smooth = cv2.split(cv2.blur(ratio, (5, 5)))  # contiguous planes: faster reductions
    low, high = np.minimum.reduce(smooth), np.maximum.reduce(smooth)
    shadow = (
        (high <= config.shadow_max_ratio)
        & (low >= config.shadow_min_ratio)
        & (high - low <= config.shadow_chroma)
    )
    return (mask & ~shadow).astype(np.uint8)


#: the pixel type of an image, kept by the channel reductions below
_Pixel = TypeVar("_Pixel", bound=np.generic)


def _per_channel_divide(image: NDArray[np.float32], divisors: NDArray[np.float32]) -> NDArray:
    """``image / divisors`` for an ``[H, W, C]`` image and ``C`` divisors, the same values: a
    last axis of 3 broadcast one pixel at a time is ~9x slower than one long row."""
    height, width, channels = image.shape
    rows = image.reshape(height, width * channels) / np.tile(divisors, width)
    return rows.reshape(height, width, channels)


def channel_max(image: NDArray[_Pixel]) -> NDArray[_Pixel]:
    """``image.max(axis=2)`` for a 3-channel image, as two element-wise maxima: numpy reduces
    a last axis of 3 one pixel at a time, about 9x slower (BENCHMARKS.md, segmentation speed)."""
    return np.maximum(np.maximum(image[..., 0], image[..., 1]), image[..., 2])


def clean(mask: NDArray[np.bool_]) -> NDArray[np.uint8]:
    binary = mask.astype(np.uint8) * 255
    opened = cv2.morphologyEx(binary, cv2.MORPH_OPEN, _ellipse(3))
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, _ellipse(3))
    return np.asarray(closed, dtype=np.uint8)


def _ellipse(size: int) -> NDArray[np.uint8]:
    return np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)), np.uint8)
