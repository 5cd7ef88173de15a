"""Upload decoding: untrusted bytes (or a local file / folder) -> the network's ``(T, 64, 44)``.

Decoders yield raw frames; the front end (``gaitid.segment.read_walk``) takes silhouettes as
they are and segments camera footage first; ``gaitid.preprocess`` pretreats either.

The supported containers are one table, ``gaitid.formats.FORMATS``: a format is
recognised by its magic bytes (the filename is only a hint used in messages, so a misnamed
file still decodes and a disguised one cannot pick its decoder), and decoded by the module
named after it: ``zip`` (PNG / JPEG / BMP frames, or .npz), ``tar`` (plain, .gz, .bz2, .xz),
``npy``, ``tiff`` (multi-page), ``video`` (mp4 / mov, avi, mkv / webm, of masks or camera
footage) and ``image`` (a single PNG / JPEG / BMP, a one-frame walk). Frames of an archive or
a folder are ordered by the natural sort of their names (``natural_key``).

Nothing is ever unpickled, and archives are never extracted; only a video is written to a
temporary file, which FFmpeg needs, and removed when decoding ends. Every malformed input
raises a subclass of ``gaitid.errors.UploadError`` whose message says what was wrong and
what is allowed; an error of our own is not one (it reaches the service as a 500).

Bounded while decoding, not after (``DecodeLimits``):

- Sizes announced by a header are checked before the expensive step: total bytes, frames,
  pixels per frame, archive members, declared uncompressed bytes, and the compression ratio
  of large members (zip bombs).
- Inflation is streamed with a running cap: bytes actually produced count against
  ``max_uncompressed_bytes``, a compressed tar stream is refused as soon as its running
  ratio passes ``max_compression_ratio``, and one frame file (a zip or tar member) may not
  inflate past ``max_bytes``, the size of a whole upload.
- Frames are decoded one at a time and reduced to the 64-pixel working size as they arrive
  (``gaitid.preprocess.normalize_keyed``): an ``.npy`` is read in place from the upload's
  bytes, an ``.npz`` member is streamed twice (value range, then frames), a tar is streamed
  member by member and sorted after pretreatment. Memory per decode is therefore the
  upload, one inflated member and one raw frame, not the raw walk.
- Work is bounded too: all frames together may hold at most ``max_total_pixels`` pixels,
  and a ``cancel`` event (set by the service when its request is over) stops decoding
  before the next frame or chunk with ``DecodeCancelledError``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from gaitid.decode.image import decode_image as _decode_image
from gaitid.decode.image import folder_frames, frame_files
from gaitid.decode.work import (
    DEFAULT_LIMITS,
    DecodeLimits,
    MiB,
    Source,
    Work,
    natural_key,
)
from gaitid.decode.zip import NPZ_KEY
from gaitid.errors import (
    InvalidSequenceError,
    TooFewFramesError,
    UploadContentError,
    UploadError,
    UploadFormatError,
    UploadTooLargeError,
)
from gaitid.formats import FORMATS, IMAGE_SUFFIXES, SUPPORTED_FORMATS, detect_format
from gaitid.preprocess import FrameKey, PreprocessedSequence, network_sequence
from gaitid.segment import FrontEnd, WalkReading, read_walk, read_walks

__all__ = [
    "DEFAULT_LIMITS",
    "FORMATS",
    "IMAGE_SUFFIXES",
    "NPZ_KEY",
    "SUPPORTED_FORMATS",
    "DecodeLimits",
    "MiB",
    "decode_image",
    "decode_path",
    "decode_path_people",
    "decode_upload",
    "decode_upload_people",
    "detect_format",
    "frame_files",
    "natural_key",
    "read_frames",
    "read_walk_from_path",
]

_Read = TypeVar("_Read", WalkReading, list[WalkReading])

#: What each format's module provides: its bytes -> the raw frames.
Opener = Callable[[bytes, Work], Source]


def decode_upload(
    data: bytes,
    filename: str | None = None,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    min_frames: int = 1,
    cancel: threading.Event | None = None,
    front_end: FrontEnd | None = None,
) -> PreprocessedSequence:
    """Bytes of any supported format -> uint8 ``(T, 64, 44)`` via the shared pretreatment.

    Silhouettes are pretreated as they are; camera footage is segmented first
    (``gaitid.segment``; ``front_end`` chooses the input kind, an empty-scene frame and a
    learned segmenter). Raises ``UploadError`` subclasses for malformed or oversized uploads
    (``NoPersonFoundError`` for footage without a walking person), ``TooFewFramesError`` when
    fewer than ``min_frames`` frames are usable, and ``DecodeCancelledError`` soon after
    ``cancel`` is set.
    """
    work = Work(limits, cancel)
    source = _open_bytes(data, filename, work)
    return _network(_read(source, min_frames, front_end or FrontEnd()))


def decode_upload_people(
    data: bytes,
    filename: str | None = None,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    min_frames: int = 1,
    cancel: threading.Event | None = None,
    front_end: FrontEnd | None = None,
) -> list[PreprocessedSequence]:
    """:func:`decode_upload` for every person of a camera clip, in order of first appearance
    (one walk for silhouettes); people with fewer than ``min_frames`` usable frames are left
    out (``TooFewFramesError`` when that is everyone)."""
    work = Work(limits, cancel)
    source = _open_bytes(data, filename, work)
    readings = _read_all(source, min_frames, front_end or FrontEnd())
    return [_network(reading) for reading in readings]


def decode_path(
    path: Path,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    min_frames: int = 1,
    front_end: FrontEnd | None = None,
) -> PreprocessedSequence:
    """A file of any upload format, or a folder of image frames -> ``(T, 64, 44)``.

    The path ``gaitid preprocess`` runs; identical to ``decode_upload`` on the file's bytes.
    """
    source = _open_path(path, Work(limits, None))
    return _network(_read(source, min_frames, front_end or FrontEnd()))


def decode_path_people(
    path: Path,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    min_frames: int = 1,
    front_end: FrontEnd | None = None,
) -> list[PreprocessedSequence]:
    """:func:`decode_path` for every person of a camera clip (``gaitid preprocess --people
    all``), as :func:`decode_upload_people`."""
    source = _open_path(path, Work(limits, None))
    return [_network(r) for r in _read_all(source, min_frames, front_end or FrontEnd())]


def read_walk_from_path(
    path: Path, *, limits: DecodeLimits = DEFAULT_LIMITS, min_frames: int = 1
) -> WalkReading:
    """A file or a folder of frames -> the walk after the front end (input kind told apart
    as for an upload) and the pretreatment, ``(T, 64, 64)`` before the network's crop: how
    training reads raw folders (``training.data.casia_raw``), so it trains on the
    silhouettes the service makes."""
    return _read(_open_path(path, Work(limits, None)), min_frames, FrontEnd())


def read_frames(
    data: bytes, filename: str | None = None, limits: DecodeLimits = DEFAULT_LIMITS
) -> list[NDArray]:
    """The raw frames of an upload in walk order, as decoded (RGB for colour), before any
    segmentation or pretreatment: what the front end starts from."""
    return _ordered(_open_bytes(data, filename, Work(limits, None)))


def decode_image(data: bytes, what: str, limits: DecodeLimits = DEFAULT_LIMITS) -> NDArray:
    """One PNG / JPEG / BMP (an empty-scene frame) -> array, under the same limits."""
    if len(data) > limits.max_bytes:
        raise UploadTooLargeError(f"{what} is {len(data)} bytes; the limit is {limits.max_bytes}")
    if detect_format(data) != "image":
        raise UploadFormatError(f"{what} must be a PNG, JPEG or BMP image")
    return _decode_image(data, what, Work(limits, None))


def _ordered(source: Source) -> list[NDArray]:
    keyed = sorted(source.frames, key=lambda item: item[0])
    return [np.array(frame) for _key, frame in keyed]  # own, writable copies


def _read(source: Source, min_frames: int, front_end: FrontEnd) -> WalkReading:
    """The front end (silhouettes as they are, footage segmented), then the pretreatment:
    the one walk :func:`read_walk` chooses."""
    return _through_front_end(read_walk, source, min_frames, front_end)


def _read_all(source: Source, min_frames: int, front_end: FrontEnd) -> list[WalkReading]:
    """:func:`_read` for every person of a clip (:func:`read_walks`)."""
    return _through_front_end(read_walks, source, min_frames, front_end)


def _through_front_end(
    reader: Callable[..., _Read], source: Source, min_frames: int, front_end: FrontEnd
) -> _Read:
    """Run ``reader`` on the source's frames; value problems found there become
    ``UploadContentError``, and the source is closed either way."""
    try:
        reading = reader(
            source.frames, scale=source.scale, min_frames=min_frames, front_end=front_end
        )
    except (UploadError, TooFewFramesError):
        raise
    except InvalidSequenceError as exc:
        raise UploadContentError(str(exc)) from exc
    finally:
        close = getattr(source.frames, "close", None)
        if close is not None:
            close()  # release files, temporary folders and decoders early
    return reading


def _network(reading: WalkReading) -> PreprocessedSequence:
    return network_sequence(
        reading.sequence,
        kind=reading.kind,
        drops=reading.drops,
        person=reading.person,
        people=reading.people,
    )


def _open_bytes(data: bytes, filename: str | None, work: Work) -> Source:
    """The decoder of the upload's format (its module, ``gaitid.decode.<format>``)."""
    if len(data) > work.limits.max_bytes:
        raise UploadTooLargeError(
            f"the upload is {len(data)} bytes; the limit is {work.limits.max_bytes} bytes"
        )
    fmt = detect_format(data, filename)
    module = importlib.import_module(f"{__name__}.{fmt}")  # tifffile, OpenCV: when needed
    source = cast(Opener, module.open_upload)(data, work)
    return Source(_counted(source.frames, work), source.scale)


def _open_path(path: Path, work: Work) -> Source:
    if path.is_dir():
        return Source(_counted(folder_frames(path, work), work))
    if not path.is_file():
        raise FileNotFoundError(f"no file or folder at {path}")
    size = path.stat().st_size
    if size > work.limits.max_bytes:
        raise UploadTooLargeError(
            f"{path} is {size} bytes; the limit is {work.limits.max_bytes} bytes"
        )
    return _open_bytes(path.read_bytes(), path.name, work)


def _counted(
    frames: Iterator[tuple[FrameKey, NDArray]], work: Work
) -> Generator[tuple[FrameKey, NDArray], None, None]:
    """Frame count, per-frame and total pixels, and the cancel check before every frame."""
    count = 0
    try:
        while True:
            work.check_cancel()
            try:
                key, frame = next(frames)
            except StopIteration:
                break
            count += 1
            if count > work.limits.max_frames:
                raise UploadTooLargeError(
                    f"the upload has more than {work.limits.max_frames} frames (the limit)"
                )
            if frame.ndim < 2:
                raise UploadContentError(f"frame {count - 1} has shape {frame.shape}")
            work.charge_frame(frame.shape[0], frame.shape[1], f"frame {count - 1}")
            yield key, frame
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()  # release files, temporary folders and decoders early
    if count == 0:
        raise UploadContentError("the upload contains no frames")
