"""Raw camera clips -> the silhouette masks of the one person walking through them.

The service, ``gaitid preprocess`` and training's raw-data reader all accept either
silhouettes (binary masks, the network's own input) or raw footage of a static camera. This
module tells the two apart and turns footage into masks; ``gaitid.preprocess`` then applies
the standard pretreatment to either.

**Telling inputs apart** (:func:`detect_kind`). Silhouettes are binary or nearly so (lossy
codecs leave a thin ring of mid-tones at the edges): at least ``BINARY_SHARE`` of their pixels
are dark (<= 24 on the 0..255 scale) or bright (>= 200), most of them dark (the person is a
minority of the picture). Natural images, colour or grey, have a broad histogram and fail
this. Callers can always override the guess (``input=silhouettes|video``).

**Segmentation** (:func:`segment_clip`), on frames reduced to ``working_height`` rows (480;
never enlarged). The working height sets how finely a mask's outline is placed before the
pretreatment resizes it to 64 rows: flawless masks of composited clips embed with a cosine
of 0.896 to their clean walks at 240 rows and 0.932 at 480, and through the real segmentation
the clip route's genuine-acceptance gap falls from 6.2 to 4.6 points (BENCHMARKS.md, "The
segmentation's working height"), for about twice the segmentation time on two cores. The
frames are held at that size until the clip is segmented; past ``max_working_bytes`` (320 MiB:
1000 full-HD frames at 240 rows) the clip is held, and segmented, at half the height instead.

1. Foreground. Either a learned person segmenter (:class:`OnnxPersonSegmenter`, any ONNX
   model with the contract below; its probability map thresholded at 0.5), or background
   subtraction: the background is the empty-scene frame the caller supplies for the camera
   (needed when the person walks towards the camera and never leaves a pixel) or else the
   per-pixel temporal median of up to ``background_samples`` frames of the clip. Each frame
   is first corrected for global lighting drift (per-channel gain: the median ratio of frame
   to background, which background pixels dominate); a pixel is foreground when its largest
   channel difference exceeds ``max(min_threshold, noise_factor x`` the frame's median
   difference``)`` (sensor noise and compression artefacts raise the median, so the
   threshold adapts to them); pixels darker than the background by a similar factor in every
   channel (``shadow_*``) are cast shadows, not the person.
2. Cleanup: a 3x3 opening removes speckle, a 3x3 closing mends one-pixel gaps.
   Steps 1-2 (``gaitid.foreground``) run on ``threads`` frames at once (each frame's
   foreground depends only on it and the background; the masks are the same with one
   thread).
3. Tracking (``gaitid.tracking``): connected components of at least ``min_blob_share`` of
   the frame are linked into one track per person, by predicted position, size and colour;
   people merged in one component (crossing) are followed through it, and pieces of one
   person are joined. Each track's mask is its component plus smaller components over the
   person's columns and within 15 % of its height (a head cut off at the neck, a detached
   hand), never another person's.
4. Frames are dropped (and counted by reason) when the person is not found (``no_person``),
   merged with another person (``overlap``), touches the image border (``cut_by_border``:
   entering or leaving; with ``side_cut_min_width`` set, a frame cut only by the left or right
   edge is kept when that share of the person's usual width is in view: off by default, because
   such frames cost the shipped model acceptance, models/README.md "Frames of a person half in
   the picture") or is too small (``too_small``). A track is a person only when
   they are usually at least ``min_person_height`` of the frame (a quarter of the picture,
   120 pixels at the working height; at a fifth, a short static flicker beside a person
   standing still passed as a second person, ``tests/gaitid/test_people.py``); a person
   who counts keeps the frames where they shrink walking away, down to 40 % of their usual
   height and 15 % of the picture.
5. A track whose median box is not taller than ``min_aspect`` times its width is not a
   walking person (a car, a pet, a rolling ball) and is left out; a track whose masks show two
   heads side by side in most frames is people who cannot be told apart (refused).
6. ``read_walk`` gives one walk: the chosen ``track``, else the person with the most usable
   frames (``one_person_only`` refuses a choice between several); ``read_walks`` everyone's.

**Learned segmenter contract** (``GAITID_SEGMENTER_PATH``, ``gaitid preprocess
--segmenter``): an ONNX model with one input, float32 ``[1, 3, H, W]``, RGB scaled to 0..1
(``H`` and ``W`` fixed in the graph, then frames are resized to them, or dynamic, then the
working frame is fed as is), and one output, ``[1, 1, H, W]`` or ``[1, H, W]``, the
probability (0..1) that each pixel belongs to a person. No model ships or is downloaded.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, Literal, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from gaitid.errors import GaitidError, TooFewFramesError, UploadContentError
from gaitid.foreground import channel_max, clean, learn_background, subtract
from gaitid.preprocess import (
    NORMALIZED_SHAPES,
    NORMALIZED_SIZE,
    ClipPerson,
    FrameKey,
    InputKind,
    NormalizedSequence,
    normalize_frame,
    normalize_keyed,
    to_gray255,
    value_scale,
)
from gaitid.tracking import Blob, Track, appearance, link, whole_height

InputChoice = Literal["auto", "silhouettes", "video"]
INPUT_CHOICES: Final[tuple[InputChoice, ...]] = ("auto", "silhouettes", "video")
#: Whose walk a clip gives: the one person with the most usable frames, or everyone followed.
People = Literal["one", "all"]
PEOPLE_CHOICES: Final[tuple[People, ...]] = ("one", "all")

#: Share of pixels that must be dark or bright for a frame to be a silhouette.
BINARY_SHARE: Final = 0.95
#: Of the frame, at least this share must be dark background for a silhouette.
DARK_SHARE: Final = 0.3
_DARK: Final = 24.0
_BRIGHT: Final = 200.0
#: Frames looked at to tell silhouettes from footage.
DETECT_FRAMES: Final = 8

#: Why segmentation drops a frame: no tracked person in it, the person touching the border
#: (entering or leaving the picture), smaller than ``min_person_height``, or merged with
#: another person (``overlap``: crossing, one passing behind the other). The pretreatment
#: adds ``too_little_foreground`` for a mask it cannot use.
DROP_REASONS: Final = ("no_person", "cut_by_border", "too_small", "overlap")
#: The working height a long clip is never reduced below to fit ``max_working_bytes``.
_MIN_WORKING_HEIGHT: Final = 120
_NO_FRAMES: Final = np.zeros((0, NORMALIZED_SIZE, NORMALIZED_SIZE), np.uint8)


class SegmenterError(GaitidError):
    """The person segmenter model cannot be loaded or breaks its contract."""


class NoPersonFoundError(UploadContentError):
    """Footage in which no walking person could be followed."""


class BackgroundNeededError(NoPersonFoundError):
    """Footage of a person who never leaves some pixels, without an empty-scene frame."""


class IndistinctPeopleError(UploadContentError):
    """Footage in which people walk so close together that no frame shows them apart: their
    walks cannot be told apart, and a merged silhouette must never be given an identity."""


class PersonChoiceError(UploadContentError):
    """The walk to use is ambiguous (several people and no ``track`` chosen where one person
    is required) or the chosen ``track`` is not one of the clip's people."""


class SegmentationConfig(BaseModel):
    """Tunables of :func:`segment_clip` (the module docstring says what each does)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    working_height: int = Field(default=480, ge=48, le=1080)
    max_working_bytes: int = Field(default=320 * 2**20, ge=2**20)
    threads: int = Field(default=2, ge=1, le=16)
    background_samples: int = Field(default=64, ge=3)
    background_passes: int = Field(default=1, ge=0, le=4)
    min_threshold: float = Field(default=20.0, gt=0, le=255)
    noise_factor: float = Field(default=4.0, gt=0)
    hysteresis: float = Field(default=0.5, gt=0, le=1)
    edge_level: float = Field(default=0.5, ge=0, lt=1)
    shadow_min_ratio: float = Field(default=0.45, gt=0, lt=1)
    shadow_max_ratio: float = Field(default=0.92, gt=0, lt=1)
    shadow_chroma: float = Field(default=0.08, gt=0, lt=1)
    min_blob_share: float = Field(default=0.002, gt=0, lt=1)
    min_person_height: float = Field(default=0.25, gt=0, le=1)
    border_margin_px: int = Field(default=1, ge=0)
    side_cut_min_width: float | None = Field(default=None, ge=0, le=1)
    min_aspect: float = Field(default=1.2, gt=0)
    probability_threshold: float = Field(default=0.5, gt=0, lt=1)


class PersonSegmenter(Protocol):
    """Anything that maps an RGB frame to a per-pixel person probability."""

    def probabilities(self, rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        """``(H, W, 3)`` uint8 RGB -> ``(H, W)`` float32 in 0..1."""
        ...


#: Called with the working frames and the segmentation of footage (``gaitid preprocess
#: --preview`` draws them).
SegmentationObserver = Callable[
    [Sequence[tuple[FrameKey, NDArray[np.uint8]]], "Segmentation"], None
]


@dataclass(frozen=True)
class FrontEnd:
    """How raw frames are read: the input kind, an empty-scene frame, a segmenter."""

    input: InputChoice = "auto"
    background: NDArray[np.uint8] | None = None
    segmenter: PersonSegmenter | None = None
    config: SegmentationConfig = field(default_factory=SegmentationConfig)
    observer: SegmentationObserver | None = None
    #: footage with several people: the walk of this track (1-based, ``ClipPerson.track``);
    #: ``None``: the person with the most usable frames, unless ``one_person_only``
    track: int | None = None
    #: refuse footage with several people unless ``track`` chooses one (enrol, verify)
    one_person_only: bool = False


@dataclass(frozen=True)
class WalkReading:
    """A walk after the front end and the pretreatment (64x64 frames), and how it was read.

    ``sequence.total`` counts the frames received; ``drops`` the frames segmentation dropped;
    for footage, ``person`` is who this walk is and ``people`` everyone followed in the clip.
    """

    sequence: NormalizedSequence
    kind: InputKind
    drops: dict[str, int]
    person: ClipPerson | None = None
    people: tuple[ClipPerson, ...] = ()


@dataclass(frozen=True)
class Segmentation:
    """One tracked person's masks (0/255, working size) of the kept frames, by frame key;
    ``dropped`` counts the other frames by reason and ``reasons`` names each one's.

    ``track`` numbers the clip's people in order of first appearance (from 1); ``span`` is the
    first and last frame index they were seen in and ``box`` their median ``(x, y, w, h)``
    over the kept frames, in working-frame pixels.
    """

    masks: list[tuple[FrameKey, NDArray[np.uint8]]]
    seen: int
    dropped: dict[str, int]
    reasons: dict[FrameKey, str] = field(default_factory=dict)
    track: int = 1
    span: tuple[int, int] = (0, 0)
    box: tuple[int, int, int, int] = (0, 0, 0, 0)


# ---------------------------------------------------------------------------- the front end


def read_walk(
    frames: Iterable[tuple[FrameKey, NDArray]],
    *,
    scale: float | None = None,
    min_frames: int = 1,
    front_end: FrontEnd | None = None,
) -> WalkReading:
    """Raw ``(key, frame)`` pairs -> the pretreated walk: silhouettes as they are, footage
    segmented first (the path shared by the service, the CLI and training's raw reader).

    Footage with several people gives the walk of ``front_end.track``, else of the person with
    the most usable frames (``PersonChoiceError`` when ``one_person_only``). ``scale`` is the
    value scale a decoder decided for a whole array. Raises ``NoPersonFoundError`` /
    ``BackgroundNeededError`` for footage without a walking person,
    ``IndistinctPeopleError`` for people who cannot be told apart and ``TooFewFramesError``
    below ``min_frames`` usable frames.
    """
    front_end = front_end or FrontEnd()
    kind, items = _kind_of(frames, scale, front_end)
    if kind == "silhouettes":
        if front_end.track not in (None, 1):
            raise PersonChoiceError(
                f"track={front_end.track} is not in the upload: silhouettes hold one walk (track 1)"
            )
        return WalkReading(normalize_keyed(items, min_frames=min_frames, scale=scale), kind, {})
    small, factor = _working_frames(items, scale, front_end.config)
    people = _segment_people(small, front_end)
    wanted = _choose(people, front_end)
    found, kept = _pretreat(wanted) if wanted is not None else _most_usable(people)
    if front_end.observer is not None:
        front_end.observer(small, found)
    return _reading(found, kept, factor, people, min_frames)


def read_walks(
    frames: Iterable[tuple[FrameKey, NDArray]],
    *,
    scale: float | None = None,
    min_frames: int = 1,
    front_end: FrontEnd | None = None,
) -> list[WalkReading]:
    """Every person's walk, in order of first appearance (``people=all``): one reading for
    silhouettes; for footage, one per person followed with at least ``min_frames`` usable
    frames (``TooFewFramesError`` when nobody has them). ``front_end.observer`` is called
    once per person."""
    front_end = front_end or FrontEnd()
    kind, items = _kind_of(frames, scale, front_end)
    if kind == "silhouettes":
        return [WalkReading(normalize_keyed(items, min_frames=min_frames, scale=scale), kind, {})]
    small, factor = _working_frames(items, scale, front_end.config)
    people = _segment_people(small, front_end)
    readings: list[WalkReading] = []
    shortest: TooFewFramesError | None = None
    for person in people:
        found, kept = _pretreat(person)
        try:
            readings.append(_reading(found, kept, factor, people, min_frames))
        except TooFewFramesError as exc:
            shortest = shortest or exc
            continue
        if front_end.observer is not None:
            front_end.observer(small, found)
    if not readings:
        assert shortest is not None  # people is never empty: _segment_people raises
        raise shortest
    return readings


def _kind_of(
    frames: Iterable[tuple[FrameKey, NDArray]], scale: float | None, front_end: FrontEnd
) -> tuple[InputKind, Iterable[tuple[FrameKey, NDArray]]]:
    """The input kind (told from the first frames unless given) and all the frames again."""
    stream = iter(frames)
    head = list(itertools.islice(stream, DETECT_FRAMES))
    kind: InputKind = (
        detect_kind([frame for _key, frame in head], scale)
        if front_end.input == "auto"
        else front_end.input
    )
    return kind, itertools.chain(head, stream)


def _working_frames(
    items: Iterable[tuple[FrameKey, NDArray]], scale: float | None, config: SegmentationConfig
) -> tuple[list[tuple[FrameKey, NDArray[np.uint8]]], float]:
    """Every frame reduced to the working size as soon as it is decoded, in key order, and
    the factor from working pixels back to the clip's own.

    The frames are held until the whole clip is segmented, so their bytes are bounded while
    they are read: when they would pass ``max_working_bytes``, the frames held so far and every
    later one are reduced to half the height (a long full-HD clip is read at 240 rows instead
    of 480, as it was before the working height was raised, within the same memory).
    """
    height = config.working_height
    raw_shape: tuple[int, ...] | None = None
    held = 0
    small: list[tuple[FrameKey, NDArray[np.uint8]]] = []
    for key, frame in items:
        if raw_shape is None:
            raw_shape = frame.shape[:2]
        elif frame.shape[:2] != raw_shape:
            raise UploadContentError(
                f"the clip's frames differ in size ({raw_shape} and {frame.shape[:2]}); footage "
                "comes from one camera, so every frame must have the same size"
            )
        reduced = _reduce(frame, scale, height)
        small.append((key, reduced))
        held += reduced.nbytes
        while held > config.max_working_bytes and height > _MIN_WORKING_HEIGHT:
            height = max(_MIN_WORKING_HEIGHT, height // 2)
            small = [(k, _reduce_held(image, raw_shape, height)) for k, image in small]
            held = sum(image.nbytes for _k, image in small)
    small.sort(key=lambda item: item[0])
    factor = raw_shape[0] / small[0][1].shape[0] if raw_shape is not None else 1.0
    return small, factor


def _segment_people(
    small: Sequence[tuple[FrameKey, NDArray[np.uint8]]], front_end: FrontEnd
) -> list[Segmentation]:
    return segment_people(
        small,
        background=front_end.background,
        segmenter=front_end.segmenter,
        config=front_end.config,
    )


def _choose(people: list[Segmentation], front_end: FrontEnd) -> Segmentation | None:
    """The person whose walk is wanted (``FrontEnd.track`` / ``one_person_only``); ``None``
    when the choice is the person with the most usable frames (:func:`_most_usable`)."""
    if front_end.track is not None:
        for found in people:
            if found.track == front_end.track:
                return found
        raise PersonChoiceError(
            f"track={front_end.track} is not in the clip: it shows {describe_people(people)}"
        )
    if front_end.one_person_only and len(people) > 1:
        raise PersonChoiceError(
            f"the clip shows {len(people)} people ({describe_people(people)}): choose whose "
            "walk this is with track=N"
        )
    return people[0] if len(people) == 1 else None


def _most_usable(
    people: list[Segmentation],
) -> tuple[Segmentation, list[tuple[FrameKey, NDArray[np.uint8]]]]:
    """The person with the most frames left after the pretreatment (the first to appear among
    equals), pretreated: the same person ``people=all`` answers for at the top level, which
    counts the frames the model is given."""
    treated = [_pretreat(found) for found in people]
    return max(treated, key=lambda pair: (len(pair[1]), -pair[0].track))


def _pretreat(
    found: Segmentation,
) -> tuple[Segmentation, list[tuple[FrameKey, NDArray[np.uint8]]]]:
    """One person's masks through the pretreatment; a mask with too little foreground left is
    dropped, and its reason said too."""
    normalized = [(key, normalize_frame(mask)) for key, mask in found.masks]
    kept = [(key, frame) for key, frame in normalized if frame is not None]
    lost = {key: "too_little_foreground" for key, frame in normalized if frame is None}
    return replace(found, reasons={**found.reasons, **lost}), kept


def _reading(
    found: Segmentation,
    kept: list[tuple[FrameKey, NDArray[np.uint8]]],
    factor: float,
    people: list[Segmentation],
    min_frames: int,
) -> WalkReading:
    """One person's pretreated frames -> their walk, with where they are in the clip."""
    if len(kept) < min_frames:
        who = f"person {found.track} of {len(people)}: " if len(people) > 1 else ""
        raise TooFewFramesError(
            len(kept),
            min_frames,
            found.seen,
            why=f"{who}frames without the whole walking person are dropped: "
            f"{describe_drops(found.dropped)}; send a longer clip",
        )
    frames = np.stack([frame for _key, frame in kept]) if kept else _NO_FRAMES
    sequence = NormalizedSequence(frames, found.seen, found.seen - len(kept))
    everyone = tuple(_clip_person(p, factor) for p in people)
    person = everyone[found.track - 1]
    return WalkReading(sequence, "video", found.dropped, person, everyone)


def _clip_person(found: Segmentation, factor: float) -> ClipPerson:
    x, y, w, h = (round(v * factor) for v in found.box)
    return ClipPerson(found.track, found.span[0], found.span[1], (x, y, w, h))


def describe_people(people: Sequence[Segmentation]) -> str:
    """``"track 1 (frames 0-80), track 2 (frames 30-120)"`` for messages."""
    return ", ".join(f"track {p.track} (frames {p.span[0]}-{p.span[1]})" for p in people)


# ---------------------------------------------------------------------------- input kinds


def detect_kind(frames: Sequence[NDArray], scale: float | None = None) -> InputKind:
    """``"silhouettes"`` when the frames are (nearly) binary and mostly dark, else ``"video"``.

    Frames of exactly 64x64 or 64x44 are already pretreated silhouettes, whatever their values.

    ``scale`` is the value scale a decoder decided for a whole array (``None``: per frame).
    """
    if not frames:
        return "silhouettes"
    votes = 0
    for frame in frames:
        if frame.shape[:2] in NORMALIZED_SHAPES:
            votes += 1  # the output of the pretreatment itself (gaitid.preprocess)
            continue
        grey = to_gray255(np.asarray(frame), scale)  # the pretreatment's own grey
        dark = float(np.mean(grey <= _DARK))
        binary = dark + float(np.mean(grey >= _BRIGHT))
        votes += binary >= BINARY_SHARE and dark >= DARK_SHARE
    return "silhouettes" if votes * 2 > len(frames) else "video"


def to_working_rgb(
    frame: NDArray, scale: float | None, config: SegmentationConfig
) -> NDArray[np.uint8]:
    """One raw frame (grey, RGB or RGBA, any dtype) -> uint8 RGB at the working height.

    Reduced as soon as it is decoded, so a clip is held at working size, never at full size.
    """
    return _reduce(frame, scale, config.working_height)


def _reduce(frame: NDArray, scale: float | None, height: int) -> NDArray[np.uint8]:
    """One raw frame -> uint8 RGB of at most ``height`` rows (never enlarged)."""
    factor = value_scale(frame) if scale is None else scale
    size = _working_size(frame.shape[:2], height)
    if size is None and factor == 1.0 and frame.dtype == np.uint8 and frame.ndim == 3:
        # a camera's own 8-bit frame at the working size: the float round trip below
        # returns these very values (a millisecond a VGA frame)
        return np.ascontiguousarray(
            np.repeat(frame, 3, axis=2) if frame.shape[2] == 1 else frame[:, :, :3]
        )
    values = np.asarray(frame, dtype=np.float32) * np.float32(factor)
    if values.ndim == 2:
        values = np.repeat(values[:, :, None], 3, axis=2)
    elif values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    else:
        values = values[:, :, :3]
    if size is not None:
        values = np.asarray(cv2.resize(values, size, interpolation=cv2.INTER_AREA), np.float32)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _reduce_held(
    image: NDArray[np.uint8], raw_shape: tuple[int, ...], height: int
) -> NDArray[np.uint8]:
    """A held working frame -> the size a raw frame of ``raw_shape`` has at ``height`` rows."""
    size = _working_size(raw_shape, height)
    if size is None or size == (image.shape[1], image.shape[0]):
        return image
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)


def _working_size(shape: tuple[int, ...], height: int) -> tuple[int, int] | None:
    """``(width, height)`` of a ``shape`` frame reduced to ``height`` rows; ``None`` when it
    already has no more (frames are never enlarged)."""
    rows, cols = shape[0], shape[1]
    if rows <= height:
        return None
    return max(1, round(cols * height / rows)), height


# ---------------------------------------------------------------------------- learned segmenter


class OnnxPersonSegmenter:
    """A person-segmentation ONNX model run by ONNX Runtime (contract: module docstring)."""

    def __init__(self, path: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        if not path.is_file():
            raise SegmenterError(f"no segmenter model at {path} (GAITID_SEGMENTER_PATH)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own types for every kind of bad file
            raise SegmenterError(f"{path} is not a loadable ONNX model: {exc}") from exc
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise SegmenterError(
                f"{path}: a segmenter has one input [1, 3, H, W] and one output [1, (1,) H, W]; "
                f"this model has {len(inputs)} inputs and {len(outputs)} outputs"
            )
        shape = list(inputs[0].shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise SegmenterError(f"{path}: input shape {shape}; expected [1, 3, H, W] (RGB)")
        self._input = inputs[0].name
        height, width = shape[2], shape[3]
        self._size = (width, height) if isinstance(height, int) and isinstance(width, int) else None
        self.path = path

    def probabilities(self, rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        height, width = rgb.shape[:2]
        fed = (
            rgb if self._size is None else cv2.resize(rgb, self._size, interpolation=cv2.INTER_AREA)
        )
        tensor = fed.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(255.0)
        out = np.asarray(self._session.run(None, {self._input: tensor})[0], dtype=np.float32)
        squeezed = out.reshape(out.shape[-2:]) if out.size == np.prod(out.shape[-2:]) else None
        if squeezed is None or not np.isfinite(squeezed).all():
            raise SegmenterError(
                f"{self.path}: output of shape {out.shape} is not one finite probability map"
            )
        prob = np.clip(squeezed, 0.0, 1.0)
        if prob.shape != (height, width):
            resized = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
            prob = np.asarray(resized, dtype=np.float32)
        return prob


# ---------------------------------------------------------------------------- segmentation


def segment_clip(
    frames: Sequence[tuple[FrameKey, NDArray[np.uint8]]],
    *,
    background: NDArray[np.uint8] | None = None,
    segmenter: PersonSegmenter | None = None,
    config: SegmentationConfig | None = None,
) -> Segmentation:
    """RGB working frames in time order -> the masks of the person with the most usable
    frames (module docstring); :func:`segment_people` gives everyone's."""
    people = segment_people(frames, background=background, segmenter=segmenter, config=config)
    chosen, _kept = _most_usable(people)
    return people[chosen.track - 1]


def segment_people(
    frames: Sequence[tuple[FrameKey, NDArray[np.uint8]]],
    *,
    background: NDArray[np.uint8] | None = None,
    segmenter: PersonSegmenter | None = None,
    config: SegmentationConfig | None = None,
) -> list[Segmentation]:
    """RGB working frames in time order -> every walking person's masks, in order of first
    appearance (``gaitid.tracking`` links the foreground components into tracks).

    A track that is not a walking person (too wide, never whole) is left out. Raises
    :class:`NoPersonFoundError` when nobody is left (the reason of the longest track),
    :class:`IndistinctPeopleError` when a track holds several people in most of its frames.
    """
    config = config or SegmentationConfig()
    if not frames:
        raise NoPersonFoundError("the clip has no frames")
    images = [frame for _key, frame in frames]
    # frames (and the background's rows) are independent here: ``threads`` of them at a time
    # (NumPy and OpenCV release the GIL), each frame keeping only its components and a
    # bit-packed mask
    with ThreadPoolExecutor(max_workers=config.threads) as pool:
        reference = None if segmenter is not None else _background(images, background, config, pool)

        def frame_blobs(image: NDArray[np.uint8]) -> _Frame:
            if segmenter is not None:
                mask = segmenter.probabilities(image) >= config.probability_threshold
            else:
                assert reference is not None
                mask = subtract(image, reference, config)
            return _blobs(clean(mask), image, config)

        blobs = list(pool.map(frame_blobs, images))
    tracks = link([frame.blobs for frame in blobs])
    if not tracks:
        raise NoPersonFoundError(
            f"nothing moves in the {len(frames)} frames of the clip: no walking person; {_ADVICE}"
        )
    from_clip = segmenter is None and background is None
    in_place = from_clip and _moves_in_place(images, config)

    def assemble(kept: list[Track]) -> tuple[list[Track], list[Segmentation]]:
        """The tracks of ``kept`` that are walking people, and their masks."""
        valid: list[Track] = []
        people: list[Segmentation] = []
        refused: list[tuple[int, NoPersonFoundError]] = []
        longest = max(len(track.blobs) for track in kept)
        for track in kept:
            others = [other for other in kept if other is not track]
            try:
                found = _assemble(
                    frames,
                    images[0].shape[:2],
                    blobs,
                    track,
                    others,
                    config,
                    background_from_clip=from_clip,
                    in_place=in_place,
                )
            except BackgroundNeededError:
                if len(track.blobs) == longest:
                    raise  # the main walker stands in place: other tracks are pieces of them
                continue
            except NoPersonFoundError as exc:
                refused.append((len(track.blobs), exc))
                continue
            valid.append(track)
            people.append(replace(found, track=len(people) + 1))
        if not people:
            raise max(refused, key=lambda item: item[0])[1]
        return valid, people

    valid, people = assemble(tracks)
    if len(valid) < len(tracks):
        # what was not a walking person (a bag put down, a shadow, a piece) merged with
        # nobody: its frames are the person's own again, and its components may be parts
        valid, people = assemble([_unmerged(track, valid) for track in valid])
    merged = [found for found in people if _indistinct(found)]
    if merged:
        raise IndistinctPeopleError(
            f"{describe_people(merged)} of the clip holds several people walking so close "
            "together that no frame shows them apart: their walks cannot be told apart. Send "
            "a clip where each person is seen on their own for part of the walk"
        )
    return people


def _moves_in_place(images: Sequence[NDArray[np.uint8]], config: SegmentationConfig) -> bool:
    """Whether what moves in the clip stays at one place of the picture: a person walking
    towards or away from the camera, whom a background learnt from the clip cannot show.

    Judged from frame differences, not from the background model (which such a person
    contaminates): the centre of the moving pixels of sampled frame pairs, at quarter size,
    stays within a narrow band of columns through most of the clip. The pairs are
    ``_MOTION_GAP`` frames apart: a small person walking in depth changes few pixels from one
    frame to the next (at 2 frames apart, too few to count in most pairs, so the clip was
    judged as moving and its person reached the model as pieces of their outline).
    """
    gap = max(2, min(_MOTION_GAP, len(images) // 4))
    count = min(len(images) - gap, _MOTION_SAMPLES)
    if count < 4:
        return False
    height, width = images[0].shape[:2]
    size = (max(1, width // 4), max(1, height // 4))
    centres: list[float] = []
    spreads: list[float] = []
    for t in np.linspace(0, len(images) - gap - 1, count).round().astype(int):
        a = cv2.resize(images[t], size, interpolation=cv2.INTER_AREA).astype(np.int16)
        b = cv2.resize(images[t + gap], size, interpolation=cv2.INTER_AREA).astype(np.int16)
        moving = channel_max(np.abs(a - b)) > config.min_threshold
        if moving.mean() > _MOTION_SHARE:
            columns = np.nonzero(moving)[1]
            centres.append(float(columns.mean()))
            spreads.append(float(columns.std()))
    if len(centres) < count // 2:
        return False
    low, high = np.percentile(centres, [10, 90])
    # one place, and one mover: two people crossing in opposite directions also keep the
    # centre of the motion still, but it is spread over both of them
    compact = float(np.median(spreads)) < _IN_PLACE_SPREAD * size[0]
    return bool(high - low < _IN_PLACE_BAND * size[0] and compact)


def _background(
    images: Sequence[NDArray[np.uint8]],
    supplied: NDArray[np.uint8] | None,
    config: SegmentationConfig,
    pool: ThreadPoolExecutor,
) -> NDArray[np.float32]:
    """The empty scene: the supplied frame (resized), or learnt from the clip
    (:func:`gaitid.foreground.learn_background`)."""
    height, width = images[0].shape[:2]
    if supplied is not None:
        s_height, s_width = supplied.shape[:2]
        if abs(s_width / s_height - width / height) > 0.02:
            raise UploadContentError(
                f"the empty-scene frame is {s_width}x{s_height} and the clip {width}x{height}: "
                "send a frame of the same camera and framing"
            )
        rgb = to_working_rgb(supplied, None, config)
        resized = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        return np.asarray(resized, np.float32)
    return learn_background(images, config, pool)


@dataclass(frozen=True)
class _Frame:
    packed: NDArray[np.uint8]  # the cleaned mask, 8 pixels a byte (np.packbits)
    shape: tuple[int, int]
    blobs: list[Blob]  # candidates for the tracks, with their appearance
    parts: list[Blob]  # every component, for merging detached parts

    def labels(self) -> NDArray[np.int32]:
        """The component labels of the mask (recomputed: the same mask, the same labels)."""
        mask = np.unpackbits(self.packed, count=self.shape[0] * self.shape[1])
        binary = mask.reshape(self.shape) * np.uint8(255)
        _count, labels = cv2.connectedComponents(binary, connectivity=8)
        return np.asarray(labels, dtype=np.int32)


def _blobs(mask: NDArray[np.uint8], image: NDArray[np.uint8], config: SegmentationConfig) -> _Frame:
    _count, components, stats, _centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_area = config.min_blob_share * mask.size
    parts = [
        Blob(i, int(s[0]), int(s[1]), int(s[2]), int(s[3]), int(s[4]))
        for i, s in enumerate(stats)
        if i > 0
    ]
    labels = np.asarray(components, np.int32)
    candidates = [
        replace(blob, hist=appearance(image, labels, blob))
        for blob in parts
        if blob.area >= min_area
    ]
    packed = np.packbits(mask > 0)
    shape = (int(mask.shape[0]), int(mask.shape[1]))
    return _Frame(packed, shape, candidates, parts)


def _assemble(
    frames: Sequence[tuple[FrameKey, NDArray[np.uint8]]],
    shape: tuple[int, int],
    blobs: list[_Frame],
    track: Track,
    others: list[Track],
    config: SegmentationConfig,
    *,
    background_from_clip: bool,
    in_place: bool = False,
) -> Segmentation:
    """One track -> its person's masks, each dropped frame with its reason."""
    tracked = list(track.blobs.values())
    # the person's usual width: a frame much wider has something merged into it
    usual_width = float(np.median([blob.w for blob in tracked]))
    # and height: in a frame where they come apart, the component followed is only a piece
    usual_height = whole_height([blob.h for blob in tracked])
    dropped = dict.fromkeys(DROP_REASONS, 0)
    reasons: dict[FrameKey, str] = {}
    masks: list[tuple[FrameKey, NDArray[np.uint8]]] = []
    # the frames where the person is whole, judged by size once their usual height is known
    whole: list[tuple[FrameKey, NDArray[np.uint8], tuple[int, int, int, int], float]] = []
    boxes: list[tuple[int, int, int, int]] = []
    aspects: list[float] = []
    centres: list[float] = []
    height, width = shape
    margin = config.border_margin_px
    for index, ((key, _frame), frame_blobs) in enumerate(zip(frames, blobs, strict=True)):
        person = track.blobs.get(index)
        if person is not None:  # another person, unseen here, merged into this component?
            merged = any(_hidden_in(person, other, index) for other in others)
        else:  # this person, unseen here, merged into another's?
            merged = any(
                _hidden_in(other.blobs[index], track, index)
                for other in others
                if index in other.blobs
            )
        merged = merged or index in track.overlap
        if merged or person is None:
            reason = "overlap" if merged else "no_person"
            dropped[reason] += 1
            reasons[key] = reason
            continue
        # other people's components are never joined to this one as detached parts
        elsewhere = {
            other_blob.label
            for other in others
            for other_blob in (other.blobs.get(index), other.merged.get(index))
            if other_blob is not None and other_blob.label != person.label
        }
        mask = _person_mask(frame_blobs, person, usual_height, elsewhere)
        if person.w > _MERGED_WIDTH * usual_width:
            mask = _around_torso(mask, person, usual_width)
        # the box, then the columns within it only (a full-frame np.nonzero costs ~1 ms)
        left, top, box_width, box_height = cv2.boundingRect(mask)
        right, bottom = left + box_width - 1, top + box_height - 1
        xs = np.nonzero(mask[top : bottom + 1, left : right + 1])[1] + left
        cut_in_height = top <= margin or bottom >= height - 1 - margin
        cut_at_side = left <= margin or right >= width - 1 - margin
        if cut_in_height or (
            cut_at_side and not _enough_in_view(int(right - left + 1), usual_width, config)
        ):
            dropped["cut_by_border"] += 1
            reasons[key] = "cut_by_border"
            continue
        box = (int(left), int(top), int(right - left + 1), int(bottom - top + 1))
        whole.append((key, mask, box, float(xs.mean())))
    shortest = _shortest_kept([box[3] for _key, _mask, box, _x in whole], config, height)
    for key, mask, box, centre in whole:
        if box[3] < shortest:
            dropped["too_small"] += 1
            reasons[key] = "too_small"
            continue
        aspects.append(box[3] / box[2])
        centres.append(centre)
        boxes.append(box)
        masks.append((key, mask))
    if not masks:
        if background_from_clip and in_place:
            raise _background_needed()  # what was found is pieces of a person walking in depth
        raise NoPersonFoundError(
            f"no walking person was found whole in any of the {len(frames)} frames "
            f"({describe_drops(dropped)}); {_ADVICE}"
        )
    if float(np.median(aspects)) < config.min_aspect:
        raise NoPersonFoundError(
            f"the moving object in the clip is {1 / float(np.median(aspects)):.1f} times as wide "
            f"as tall: not a walking person; {_ADVICE}"
        )
    # The background is unknown behind a person who never moves by their own width. A person
    # followed in only a few frames stood still only when the clip's motion stays in one
    # place; otherwise they were lost (or passed quickly) and an empty scene would not help.
    # When the clip's motion stays in one place, what was kept is not the person either way:
    # a person walking straight at the camera is learnt into the background, and what
    # differs from it (the edges of their growing outline) scatters as pieces.
    followed = len(tracked) >= _FOLLOWED_SHARE * len(frames)
    static = in_place or (max(centres) - min(centres) < usual_width and followed)
    if background_from_clip and static:
        raise _background_needed()
    usual_box = np.median(np.asarray(boxes, np.float64), axis=0).round().astype(int)
    return Segmentation(
        masks,
        len(frames),
        dropped,
        reasons,
        span=(track.first, track.last),
        box=(int(usual_box[0]), int(usual_box[1]), int(usual_box[2]), int(usual_box[3])),
    )


def _shortest_kept(heights: Sequence[int], config: SegmentationConfig, frame_height: int) -> float:
    """The shortest mask (rows) kept as a frame of this person.

    A track counts as a person only when their height seen whole (the tracker's
    :func:`~gaitid.tracking.whole_height` of their frames) is at least ``min_person_height``
    of the picture: a short flicker or a small object stays out. A person who does count
    keeps the frames where they shrink while walking away or before coming closer, down to
    ``_SHRUNK_SHARE`` of their usual height and never below ``_SMALLEST_PERSON`` of the
    picture: those frames show the same whole person, smaller. A walk at 018 of CASIA-B goes
    from 122 to 50 rows of a 240-row frame; at a fixed quarter of the picture, 065 bg-01 at
    018 / 036 and nm-05 at 162 lost 16 such frames as ``too_small``.
    """
    smallest = config.min_person_height * frame_height
    if not heights:
        return smallest
    usual = whole_height(heights)
    if usual < smallest:
        return smallest
    return max(_SMALLEST_PERSON * frame_height, min(smallest, _SHRUNK_SHARE * usual))


def _unmerged(track: Track, people: list[Track]) -> Track:
    """``track`` with its merges kept only where another of ``people`` shares the component;
    the other merged frames become clean frames of its own."""
    blobs, merged = dict(track.blobs), {}
    for t, blob in track.merged.items():
        shared = any(other is not track and other.merged.get(t) is blob for other in people)
        if shared:
            merged[t] = blob
        else:
            blobs[t] = blob
    return Track(blobs, merged)


def _background_needed() -> BackgroundNeededError:
    return BackgroundNeededError(
        "the person stays in one place (walking towards or away from the camera), so the "
        "background cannot be learnt from the clip: send an empty-scene frame of the same "
        "camera (the background field, or --background)"
    )


def _hidden_in(person: Blob, other: Track, index: int) -> bool:
    """Whether ``other``, unseen in frame ``index``, is merged into ``person``'s component
    there: the centre it had, interpolated between the frames it was seen in around
    ``index`` (extrapolated up to ``_EMERGES`` frames before it first appears or after it was
    last seen: someone stepping out from behind another), lies inside ``person``'s box."""
    if index in other.blobs or not other.first - _EMERGES <= index <= other.last + _EMERGES:
        return False
    seen = sorted(other.blobs)
    before = [t for t in seen if t < index][-2:]
    after = [t for t in seen if t > index][:2]
    if before and after:
        t0, t1 = before[-1], after[0]
    elif len(before) == 2 or len(after) == 2:
        t0, t1 = before or after  # extrapolate along the two nearest frames
    else:
        return False
    (ax, ay), (bx, by) = other.blobs[t0].centre, other.blobs[t1].centre
    share = (index - t0) / (t1 - t0)
    return person.contains((ax + share * (bx - ax), ay + share * (by - ay)))


def _indistinct(found: Segmentation) -> bool:
    """Whether most of a person's masks show two heads side by side: people walking so
    close together that they were never apart (judged on up to ``_HEAD_SAMPLES`` masks)."""
    picks = np.linspace(0, len(found.masks) - 1, min(len(found.masks), _HEAD_SAMPLES))
    votes = [_heads(found.masks[int(i)][1]) >= 2 for i in picks.round()]
    return sum(votes) * 2 > len(votes)


def _heads(mask: NDArray[np.uint8]) -> int:
    """Heads of a mask: runs of columns that reach the top ``_HEAD_BAND`` of its box,
    separated by columns whose top lies below ``_NECK_DEPTH`` of it (a dip between two people's
    heads; a person's arms and bags stay below their head)."""
    ys, xs = np.nonzero(mask)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    crop = mask[top : bottom + 1, left : right + 1] > 0
    height = crop.shape[0]
    filled = crop.any(axis=0)
    tops = np.where(filled, crop.argmax(axis=0), height)  # first row of each column
    heads, in_head, dipped = 0, False, True
    for column_top in tops:
        if column_top <= _HEAD_BAND * height:
            if not in_head and dipped:
                heads += 1
            in_head, dipped = True, False
        else:
            in_head = False
            dipped = dipped or column_top > _NECK_DEPTH * height
    return heads


#: Frames before a person first appears (or after they were last seen) in which they may be
#: hidden in another's component.
_EMERGES: Final = 4
#: Masks looked at for two heads side by side, the top share of the box a head reaches and
#: how far below it the outline must dip between two heads.
_HEAD_SAMPLES: Final = 9
_HEAD_BAND: Final = 0.12
_NECK_DEPTH: Final = 0.18
#: A person tracked in fewer than this share of the frames is judged as standing still only
#: when the clip's motion says so (``_moves_in_place``).
_FOLLOWED_SHARE: Final = 0.25
#: A person counts when their height seen whole reaches ``min_person_height``; their frames
#: are kept down to ``_SHRUNK_SHARE`` of that height, and never below ``_SMALLEST_PERSON`` of
#: the frame (36 rows of 240).
_SHRUNK_SHARE: Final = 0.4
_SMALLEST_PERSON: Final = 0.15
#: Frame pairs looked at for where the motion is, the frames between the two of a pair, the
#: share of a quarter-size frame that must move for a pair to count (a few pixels: sensor
#: noise at quarter size stays far below ``min_threshold``), and the band (share of the
#: width) motion stays in when in place.
_MOTION_SAMPLES: Final = 24
_MOTION_GAP: Final = 8
_MOTION_SHARE: Final = 0.0002
_IN_PLACE_BAND: Final = 0.2
#: ... and the moving pixels' columns spread (std) less than this share of the width: one
#: large walker with a cast shadow spreads about 0.1, two people apart 0.2 and more
_IN_PLACE_SPREAD: Final = 0.15
#: A tracked blob wider than this many times the person's usual width has another object
#: (a passer-by, a cart, a long shadow) merged into it; only the columns around the torso stay.
_MERGED_WIDTH: Final = 1.4
_HOLE_SHARE: Final = 0.02
#: Parts of the person may be detached by up to this share of its height (a thin neck).
_PART_REACH: Final = 0.15
_ADVICE: Final = (
    "send a clip of one person walking past a static camera (with an empty-scene frame when "
    "they walk towards it), or silhouettes with input=silhouettes"
)


def _enough_in_view(visible_width: int, usual_width: float, config: SegmentationConfig) -> bool:
    """Whether a frame cut by the picture's left or right edge still shows enough of the person.

    Such a frame has the person's whole height (the pretreatment's scale is right) and part of
    their width, centred by the pretreatment on what is in view. ``side_cut_min_width`` ``None``
    (the default) drops them all: kept, they cost the shipped model more acceptance through
    clips than the longer walk brings (models/README.md, "Frames of a person half in the
    picture").
    """
    share = config.side_cut_min_width
    return share is not None and visible_width >= share * usual_width


def _around_torso(mask: NDArray[np.uint8], person: Blob, usual_width: float) -> NDArray[np.uint8]:
    """Keep the columns within the person's usual width of the torso (the upper half of the
    box, which a merged object at the feet does not reach)."""
    upper = mask[person.y : person.y + person.h // 2]
    cols = np.flatnonzero(upper.any(axis=0))
    if cols.size == 0:
        return mask
    centre = float(np.average(np.arange(mask.shape[1]), weights=upper.sum(axis=0)))
    half = 0.8 * usual_width
    gated = np.zeros_like(mask)
    lo, hi = max(0, round(centre - half)), min(mask.shape[1], round(centre + half) + 1)
    gated[:, lo:hi] = mask[:, lo:hi]
    return gated


def _person_mask(
    frame: _Frame,
    person: Blob,
    usual_height: float,
    elsewhere: set[int] | frozenset[int] = frozenset(),
) -> NDArray[np.uint8]:
    """The person's component plus smaller parts over its columns (a head cut off at the
    neck, a hand), small holes filled, 0/255. Components in ``elsewhere`` are other people.

    A part joins when it is within a share of the person's height: their usual height (the
    track's whole height), or this component's when taller. Measured on the component alone,
    a cut at the shoulders would leave the head out exactly when the rest is short because of
    the cut, and the frame would reach the model as a piece.

    Only holes under ``_HOLE_SHARE`` of the person are filled: clothing that matches the
    background leaves small holes, while the gap between two legs closed by the feet is a
    large one that belongs to the background.
    """
    keep = [person.label]
    reach = _PART_REACH * max(person.h, usual_height)
    for part in frame.parts:
        if part.label == person.label or part.area >= person.area or part.label in elsewhere:
            continue
        # a detached head, hand or foot: over the person's columns, at most `reach` away
        gap_y = max(person.y - (part.y + part.h), part.y - (person.y + person.h), 0)
        flat = part.w > 2 * part.h  # a strip of shadow on the ground, not a body part
        if part.shares_columns(person) and gap_y <= reach and not flat:
            keep.append(part.label)
    selected = np.isin(frame.labels(), keep).astype(np.uint8) * 255
    contours, hierarchy = cv2.findContours(selected, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return selected
    largest = _HOLE_SHARE * person.area
    holes = [
        contour
        for contour, link in zip(contours, hierarchy[0], strict=True)
        if link[3] >= 0 and cv2.contourArea(contour) < largest  # a child contour: a hole
    ]
    cv2.drawContours(selected, holes, -1, 255, thickness=cv2.FILLED)
    return selected


def describe_dropped_frames(reasons: dict[FrameKey, str], limit: int = 12) -> str:
    """``{0: "no_person", 1: "no_person", 7: "cut_by_border"}`` -> ``"0-1 no person,
    7 cut by border"``: runs of consecutive frames with one reason (frame keys in order)."""
    runs: list[tuple[FrameKey, FrameKey, str]] = []
    for key, reason in sorted(reasons.items()):
        last = runs[-1] if runs else None
        if (
            last is not None
            and last[2] == reason
            and isinstance(key, int)
            and isinstance(last[1], int)
            and key == last[1] + 1
        ):
            runs[-1] = (last[0], key, reason)
        else:
            runs.append((key, key, reason))
    text = [
        f"{first if first == last else f'{first}-{last}'} {reason.replace('_', ' ')}"
        for first, last, reason in runs[:limit]
    ]
    if len(runs) > limit:
        text.append(f"and {len(runs) - limit} more runs")
    return ", ".join(text)


def describe_drops(dropped: dict[str, int]) -> str:
    """``{"cut_by_border": 3}`` -> ``"3 cut by border"`` for messages."""
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in dropped.items() if v) or "none"
