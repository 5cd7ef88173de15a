"""Silhouette preprocessing: raw masks of any size -> the network's ``(T, 64, 44)`` uint8 input.

This is the field's standard pretreatment (GaitSet's, kept by OpenGait's ``pretreatment.py``)
so that walks from CASIA-B style pkl files, uploads and synthetic walkers all look alike to
the network. Per frame:

1. Convert to a float grey image on the 0..255 scale (rules below).
2. Drop the frame when it has too little foreground (rule below); drops are counted.
3. Crop rows to the foreground (first to last row with any non-zero pixel).
4. Resize to height 64 keeping the aspect ratio: width ``int(64 * w / h)``, bicubic
   (``cv2.INTER_CUBIC``, as OpenGait), clipped back to 0..255.
5. Centre horizontally on the first column where the cumulative foreground mass exceeds half
   of the total, zero-pad 32 columns on both sides (so a centre at the border still gets a
   full window: the missing side is background), and cut the 64 columns around it.
6. The network input is the middle 64x44 (10 columns dropped each side, ``to_network_input``);
   ``gaitid.contract.batch_sequences`` scales it to [0, 1] for the network.

Edge cases, decided here once:

- Values. ``bool`` masks map to 0/255. Integers: 0/1 masks (max <= 1) are scaled by 255,
  0..255 is kept, 16-bit (max <= 65535) is scaled by 255/65535; negatives or larger values
  raise. Floats: NaN/inf or negatives raise; max <= 1 means 0..1 and is scaled by 255, max
  <= 255 is kept, larger raises. The scale is decided once for a whole array (so a nearly
  empty frame in a 0..255 sequence is not mistaken for a 0/1 mask), and per frame when frames
  arrive one by one.
- Colour. ``(H, W, 3)`` uses the per-pixel maximum over channels rather than luminance: the
  channel order (RGB/BGR) of client data is unknown, and a mask drawn in any pure colour
  on black stays foreground (luminance would turn pure blue into 29/255). ``(H, W, 4)``:
  when the alpha channel varies, the colour is composited onto black (transparent =
  background); a constant alpha is ignored. ``(H, W, 1)`` is squeezed. Foreground is
  assumed light on a dark background.
- Lossy codecs. Values below ``NOISE_FLOOR`` are zeroed before steps 2-5: JPEG and video
  codecs leave faint ringing next to the silhouette that would otherwise extend the row crop
  by up to a coding block and change the scale. OpenGait applies no floor; for the binary
  masks of CASIA-B this changes nothing.
- Too little foreground. OpenGait drops frames whose pixel sum is <= 10000 on the 0..255
  scale (about 39 full pixels), tuned for 320x240 frames. Small frames need a rule that
  scales, so a frame is kept only when its foreground mass (sum / 255) exceeds
  ``min(10000 / 255, 1% of the frame area)``: identical to OpenGait from 3922 pixels up
  (e.g. 64x64 and larger), proportional below. A foreground band more than
  ``MAX_ASPECT`` times wider than tall is a stripe of noise, not a person, and is dropped
  too (it would also need an absurdly wide resize).
- Already normalized input. A frame whose shape is exactly 64x64 or 64x44 is taken as the
  output of this pretreatment and passes through: its values are only brought to 0..255 by
  the rules above (uint8 0..255 input is returned bit for bit), 64x44 frames are zero-padded
  to 64x64 so ``to_network_input`` gives them back unchanged. The empty-frame rule still
  applies, so an upload of blank frames fails loudly instead of producing a meaningless
  embedding. The one ambiguity: a raw camera frame of exactly that size is not re-centred.
- Too few usable frames. ``TooFewFramesError`` carries ``usable``, ``required`` and
  ``total`` (frames received).
- Arrays. A sequence array is ``(T, H, W)`` or ``(T, H, W, C)`` with C in 1, 3, 4; a 3-d
  array is always read as ``(T, H, W)``, never as one colour frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

import cv2
import numpy as np
from numpy.typing import NDArray

from gaitid.contract import FRAME_HEIGHT, FRAME_WIDTH
from gaitid.errors import InvalidSequenceError, TooFewFramesError

logger = logging.getLogger(__name__)

#: Side of the square normalized frame (OpenGait ``img_size``).
NORMALIZED_SIZE: Final = FRAME_HEIGHT
#: Columns dropped on each side to go from 64x64 to the network's 64x44.
SIDE_CROP: Final = (NORMALIZED_SIZE - FRAME_WIDTH) // 2
#: OpenGait's drop rule: a frame whose 0..255 pixel sum is <= this is dropped.
OPENGAIT_MIN_SUM: Final = 10_000
#: For small frames the drop rule becomes this fraction of the frame area (in full pixels).
MIN_FOREGROUND_FRACTION: Final = 0.01
#: Values below this (0..255 scale) are codec noise, not foreground (full-path frames only).
NOISE_FLOOR: Final = 26.0
#: Foreground bands wider than this many times their height are dropped as noise.
MAX_ASPECT: Final = 64

NORMALIZED_SHAPES: Final = ((NORMALIZED_SIZE, NORMALIZED_SIZE), (NORMALIZED_SIZE, FRAME_WIDTH))
_COLOUR_CHANNELS: Final = (1, 3, 4)

#: How an upload was read: silhouette masks as they are, or camera footage segmented first.
InputKind: TypeAlias = Literal["silhouettes", "video"]

#: What orders the frames of a walk: their index, or (for archives) a natural sort key.
FrameKey: TypeAlias = int | tuple[Any, ...]


@dataclass(frozen=True)
class NormalizedSequence:
    """A walk after pretreatment: ``frames`` uint8 ``(T, 64, 64)``; ``total`` frames received,
    ``dropped`` of them had too little foreground (``T == total - dropped``)."""

    frames: NDArray[np.uint8]
    total: int
    dropped: int

    @property
    def used(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class ClipPerson:
    """One person followed through a camera clip (``gaitid.segment``): the track's number
    (1-based, in order of first appearance), the first and last frame they were seen in
    (positions in the clip, from 0), and their median box ``(x, y, w, h)`` over the frames
    kept, in the clip's own pixels."""

    track: int
    first_frame: int
    last_frame: int
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class PreprocessedSequence:
    """The network input of a walk: ``frames`` uint8 ``(T, 64, 44)``, plus the frame counts
    (``total`` received, ``dropped`` of them unusable), how the input was read (``kind``) and
    why frames were dropped (``drops``: reason -> count)."""

    frames: NDArray[np.uint8]
    total: int
    dropped: int
    kind: InputKind = "silhouettes"
    drops: Mapping[str, int] = field(default_factory=dict)
    #: footage: the person this walk is, and everyone followed in the clip (None / empty for
    #: silhouettes, which hold one walk by definition)
    person: ClipPerson | None = None
    people: tuple[ClipPerson, ...] = ()

    @property
    def used(self) -> int:
        return int(self.frames.shape[0])


def value_scale(values: NDArray) -> float:
    """Factor that brings ``values`` to the 0..255 scale (see the module docstring).

    Raises ``InvalidSequenceError`` for unsupported dtypes, NaN/inf, negatives or values
    beyond the largest supported range.
    """
    kind = values.dtype.kind
    if kind not in "biuf" or values.dtype.names is not None:
        raise InvalidSequenceError(
            f"silhouette dtype {values.dtype} is not supported; use bool, integers "
            "(0/1, 0..255 or 16-bit) or floats (0..1 or 0..255)"
        )
    if kind == "b" or values.size == 0:
        return 255.0
    if kind == "f" and not np.isfinite(values).all():
        raise InvalidSequenceError("silhouette values contain NaN or infinity")
    low, high = float(values.min()), float(values.max())
    if low < 0:
        raise InvalidSequenceError(
            f"silhouette values must not be negative; the smallest is {low:g}"
        )
    if high <= 1:
        return 255.0
    if high <= 255:
        return 1.0
    if kind in "iu" and high <= 65535:
        return 255.0 / 65535.0
    allowed = "0..1 or 0..255" if kind == "f" else "0/1, 0..255 or 0..65535"
    raise InvalidSequenceError(f"silhouette values go up to {high:g}; allowed ranges are {allowed}")


def to_gray255(frame: NDArray, scale: float | None) -> NDArray[np.float32]:
    """One frame of any supported layout and dtype -> float32 ``(H, W)`` on the 0..255 scale."""
    if frame.ndim == 3 and frame.shape[2] in _COLOUR_CHANNELS:
        channels = frame.shape[2]
    elif frame.ndim == 2:
        channels = 0
    else:
        raise InvalidSequenceError(
            f"a frame must be (H, W) or (H, W, C) with C in {_COLOUR_CHANNELS}; "
            f"got shape {frame.shape}"
        )
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InvalidSequenceError(f"a frame has no pixels: shape {frame.shape}")
    factor = value_scale(frame) if scale is None else scale
    values = frame.astype(np.float32) * np.float32(factor)
    if channels == 0:
        return values
    if channels == 1:
        return values[:, :, 0]
    gray = values[:, :, :3].max(axis=2)
    if channels == 4:
        alpha = values[:, :, 3]
        if float(alpha.min()) != float(alpha.max()):
            # composite onto black: transparent pixels are background
            gray = gray * (alpha / np.float32(255.0))
    return gray


def _enough_foreground(gray: NDArray[np.float32]) -> bool:
    """OpenGait's sum > 10000 rule, relaxed to 1% of the area for frames under 3922 px."""
    mass = float(gray.sum(dtype=np.float64)) / 255.0
    needed = min(OPENGAIT_MIN_SUM / 255.0, MIN_FOREGROUND_FRACTION * gray.size)
    return mass > needed


def _pass_through(gray: NDArray[np.float32]) -> NDArray[np.uint8] | None:
    """An already normalized 64x64 or 64x44 frame -> uint8 64x64 (no crop, no resize)."""
    if not _enough_foreground(gray):
        return None
    out = np.rint(gray).astype(np.uint8)
    if out.shape[1] == FRAME_WIDTH:
        out = np.pad(out, ((0, 0), (SIDE_CROP, SIDE_CROP)))
    return out


def pretreat_frame(gray: NDArray[np.float32]) -> NDArray[np.uint8] | None:
    """Steps 2-5 of the module docstring for one raw frame of any size (a 0..255 float grey
    image), never taken as already normalized: what training's degraded walks go through."""
    gray = np.where(gray < NOISE_FLOOR, np.float32(0.0), gray)
    if not _enough_foreground(gray):
        return None
    rows = np.flatnonzero(gray.sum(axis=1) > 0)
    band = gray[rows[0] : rows[-1] + 1]
    height, width = band.shape
    if width > MAX_ASPECT * height:
        return None
    new_width = max(1, int(NORMALIZED_SIZE * width / height))
    # OpenGait: cv2.resize(img, (int(img_size * ratio), img_size), INTER_CUBIC)
    resized = cv2.resize(band, (new_width, NORMALIZED_SIZE), interpolation=cv2.INTER_CUBIC)
    resized = np.clip(resized, 0.0, 255.0)
    cumulative = np.cumsum(resized.sum(axis=0, dtype=np.float64))
    if cumulative[-1] <= 0:
        return None
    centre = int(np.argmax(cumulative > cumulative[-1] / 2))
    half = NORMALIZED_SIZE // 2
    # [64, W] -> [64, W + 64]: the window [centre - 32, centre + 32) always fits
    padded = np.pad(resized, ((0, 0), (half, half)))
    return np.rint(padded[:, centre : centre + NORMALIZED_SIZE]).astype(np.uint8)


def normalize_frame(frame: NDArray, *, scale: float | None = None) -> NDArray[np.uint8] | None:
    """One raw frame (any ``H x W``, grey or colour, bool / 0-1 / 0-255 / float) -> uint8 64x64.

    Returns ``None`` when the frame has too little foreground (the caller counts it as
    dropped). ``scale`` is the factor to the 0..255 scale when the caller decided it for a
    whole sequence; ``None`` decides it from this frame alone.
    """
    gray = to_gray255(np.asarray(frame), scale)
    if gray.shape in NORMALIZED_SHAPES:
        return _pass_through(gray)
    return pretreat_frame(gray)


def _check_min_frames(min_frames: int) -> None:
    if min_frames < 1:
        raise ValueError(f"min_frames must be >= 1; got {min_frames}")


def normalize_sequence(
    frames: Iterable[NDArray] | NDArray, *, min_frames: int = 1, scale: float | None = None
) -> NormalizedSequence:
    """Pretreat every frame of a walk to uint8 64x64, dropping (and counting) empty frames.

    ``frames`` is a ``(T, H, W)`` / ``(T, H, W, C)`` array (value scale decided once for the
    whole array) or any iterable of frames, consumed lazily so decoders can stream; ``scale``
    gives an iterable the factor a decoder decided for the whole walk. Raises
    ``TooFewFramesError`` when fewer than ``min_frames`` frames are usable.
    """
    if isinstance(frames, np.ndarray):
        colour_ok = frames.ndim == 3 or frames.shape[-1] in _COLOUR_CHANNELS
        if frames.ndim not in (3, 4) or not colour_ok:
            raise InvalidSequenceError(
                f"a sequence must be (T, H, W) or (T, H, W, C) with C in {_COLOUR_CHANNELS}; "
                f"got shape {frames.shape}"
            )
        scale = value_scale(frames)
    return normalize_keyed(enumerate(frames), min_frames=min_frames, scale=scale)


def normalize_keyed(
    items: Iterable[tuple[FrameKey, NDArray]], *, min_frames: int = 1, scale: float | None = None
) -> NormalizedSequence:
    """Pretreat ``(key, frame)`` pairs that may arrive in any order; the walk follows the keys.

    Each raw frame is reduced to 64x64 as soon as it arrives, so a decoder that streams (a tar
    archive, whose members come in archive order and are sorted by name) never holds more
    than one raw frame. ``scale`` as in :func:`normalize_frame`.
    """
    _check_min_frames(min_frames)
    kept: list[tuple[FrameKey, NDArray[np.uint8]]] = []
    total = 0
    for key, frame in items:
        total += 1
        out = normalize_frame(frame, scale=scale)
        if out is not None:
            kept.append((key, out))
    kept.sort(key=lambda item: item[0])
    dropped = total - len(kept)
    if dropped:
        logger.debug("dropped %d of %d frames with too little foreground", dropped, total)
    if len(kept) < min_frames:
        raise TooFewFramesError(len(kept), min_frames, total)
    stacked = (
        np.stack([frame for _key, frame in kept])
        if kept
        else np.zeros((0, NORMALIZED_SIZE, NORMALIZED_SIZE), np.uint8)
    )
    return NormalizedSequence(frames=stacked, total=total, dropped=dropped)


def to_network_input(frames64: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """``(T, 64, 64)`` -> ``(T, 64, 44)``: the middle columns the network sees (a copy)."""
    if frames64.ndim != 3 or frames64.shape[1:] != (NORMALIZED_SIZE, NORMALIZED_SIZE):
        raise InvalidSequenceError(
            f"expected normalized frames of shape (T, {NORMALIZED_SIZE}, {NORMALIZED_SIZE}); "
            f"got {frames64.shape}"
        )
    if frames64.dtype != np.uint8:
        raise InvalidSequenceError(f"expected uint8 normalized frames; got {frames64.dtype}")
    # [T, 64, 64] -> [T, 64, 44]
    return np.ascontiguousarray(frames64[:, :, SIDE_CROP : SIDE_CROP + FRAME_WIDTH])


def network_sequence(
    normalized: NormalizedSequence,
    *,
    kind: InputKind = "silhouettes",
    drops: Mapping[str, int] | None = None,
    person: ClipPerson | None = None,
    people: tuple[ClipPerson, ...] = (),
) -> PreprocessedSequence:
    """A pretreated walk -> the network input with its frame counts; ``drops`` counts the
    frames an earlier stage (segmentation) dropped already, by reason; ``person`` and
    ``people`` say which person of a clip it is and who else was in it."""
    reasons = {k: v for k, v in (drops or {}).items() if v}
    earlier = sum(reasons.values())
    if normalized.dropped > earlier:
        reasons["too_little_foreground"] = normalized.dropped - earlier
    return PreprocessedSequence(
        frames=to_network_input(normalized.frames),
        total=normalized.total,
        dropped=normalized.dropped,
        kind=kind,
        drops=reasons,
        person=person,
        people=people,
    )
