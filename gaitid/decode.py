"""Upload decoding: untrusted bytes (or a local file / folder) -> the network's ``(T, 64, 44)``.

Decoders yield raw frames; the front end (``gaitid.segment.read_walk``) takes silhouettes as
they are and segments camera footage first; ``gaitid.preprocess`` pretreats either.

Supported containers, recognised by their magic bytes (the filename is only a hint used in
messages, so a misnamed file still decodes and a disguised one cannot pick its decoder):

- zip or tar (plain, .gz, .bz2, .xz) of PNG / JPEG / BMP frames, ordered by the natural sort
  of member names (``f2.png`` before ``f10.png``); directories, hidden members (any path
  part starting with ``.``) and ``__MACOSX`` are skipped, members of other types too.
- ``.npy``: one ``(T, H, W)`` or ``(T, H, W, C)`` array of bool / integers / floats, read
  in place after its header was checked against the limits (never unpickled).
- ``.npz``: a zip of ``.npy`` members: a single array, or the one stored under
  ``NPZ_KEY`` (``"silhouettes"``) when there are several.
- video, of masks or camera footage (mp4 / mov, avi, mkv / webm), through OpenCV's FFmpeg
  backend from a temporary file; frames come out RGB like every other source.
- multi-page TIFF (one page per frame; uncompressed or deflate).
- a single PNG / JPEG / BMP image (a one-frame walk).

Nothing is ever unpickled and nothing is extracted to disk. Every malformed input raises a
subclass of ``gaitid.errors.UploadError`` whose message says what was wrong and what is
allowed.

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

import bz2
import gzip
import io
import logging
import lzma
import re
import struct
import tarfile
import tempfile
import threading
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from gaitid.errors import (
    CorruptUploadError,
    DecodeCancelledError,
    InvalidSequenceError,
    TooFewFramesError,
    UnsafeArchiveError,
    UploadContentError,
    UploadError,
    UploadFormatError,
    UploadTooLargeError,
)
from gaitid.preprocess import (
    FrameKey,
    PreprocessedSequence,
    network_sequence,
    value_scale,
)
from gaitid.segment import FrontEnd, read_walk

logger = logging.getLogger(__name__)

MiB: Final = 1 << 20
#: Key of the silhouette array in an npz that holds more than one array.
NPZ_KEY: Final = "silhouettes"
IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
#: Compression ratios are only judged on members at least this large: small members with
#: a high ratio (blank masks deflate ~1000:1) are harmless.
RATIO_CHECK_MIN_BYTES: Final = 1 * MiB
#: Bytes inflated (or read) per step: between two steps the cancel event is checked.
_CHUNK: Final = 1 * MiB

#: What the third-party decoders raise on malformed data: Pillow (``OSError``, which
#: ``UnidentifiedImageError`` is, ``ValueError``, ``EOFError``, ``SyntaxError``,
#: ``struct.error``), zipfile and tarfile (``BadZipFile``, ``TarError``, ``EOFError``, and
#: ``NotImplementedError`` for an unknown compression method), zlib and lzma, numpy's .npy
#: header reader (``ValueError``; the tokenizer's ``TokenError``) and tifffile
#: (``TiffFileError``, a ``ValueError``). Only calls into those libraries are wrapped
#: (``_reading``): an error of our own (``TypeError``, ``KeyError``, ...) is a bug, and the
#: service answers it with a logged 500, never with "corrupt upload".
_DECODER_FAILURES: Final = (
    ValueError,
    OSError,
    EOFError,
    NotImplementedError,
    SyntaxError,
    struct.error,
    zlib.error,
    lzma.LZMAError,
    tokenize.TokenError,
    zipfile.BadZipFile,
    tarfile.TarError,
)
#: tifffile's tag parser also fails with these on malformed tags (found by fuzzing).
_TIFF_FAILURES: Final = (TypeError, KeyError, IndexError)

Format = Literal["zip", "tar", "npy", "tiff", "video", "image"]
SUPPORTED_FORMATS: Final = (
    "zip or tar(.gz/.bz2/.xz) of PNG/JPEG/BMP frames, .npy, .npz, mp4/avi/mkv video, "
    "multi-page TIFF, a single PNG/JPEG/BMP"
)


class DecodeLimits(BaseModel):
    """Upper bounds applied while decoding; anything over raises ``UploadTooLargeError``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: int = Field(
        default=64 * MiB,
        gt=0,
        description="size of the upload itself, and of any one frame file inflated from it",
    )
    max_frames: int = Field(default=1000, gt=0, description="frames in one walk (CASIA-B: ~80)")
    max_pixels_per_frame: int = Field(
        default=1 << 21, gt=0, description="H*W of one frame; 2 Mpx admits 1920x1080"
    )
    max_total_pixels: int = Field(
        default=1 << 28,
        gt=0,
        description="pixels decoded for one walk, all frames together (the work budget; "
        "268 Mpx is ~870 VGA or ~130 full-HD frames)",
    )
    max_archive_members: int = Field(default=2000, gt=0, description="entries in a zip / tar")
    max_uncompressed_bytes: int = Field(
        default=256 * MiB, gt=0, description="bytes inflated from an archive or compressed stream"
    )
    max_compression_ratio: float = Field(
        default=500.0, gt=1, description="uncompressed/compressed for members over 1 MiB (bombs)"
    )


DEFAULT_LIMITS: Final = DecodeLimits()


class _Reader(Protocol):
    """The part of a binary file that streaming readers need."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class _Source:
    """What a container opener returns: raw frames with the key that orders them, lazily.

    ``scale`` is the value scale decided for a whole array (npy/npz), ``None`` for frames
    that each decide their own (images, video).
    """

    frames: Iterator[tuple[FrameKey, NDArray]]
    scale: float | None = None


@contextmanager
def _reading(failure: str, also: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """A third-party decoder's failure inside the block -> ``CorruptUploadError``
    (``"{failure}: {exc}"``); our own errors pass through unchanged. ``also``: what one
    library raises besides ``_DECODER_FAILURES``."""
    try:
        yield
    except (UploadError, DecodeCancelledError):
        raise  # a limit or the cancel event, raised from a stream the library read from
    except Exception as exc:
        if isinstance(exc, _DECODER_FAILURES + also):
            raise CorruptUploadError(f"{failure}: {exc}") from exc
        raise


class _Work:
    """One decode's running totals against its limits, and the caller's stop signal."""

    def __init__(self, limits: DecodeLimits, cancel: threading.Event | None) -> None:
        self.limits = limits
        self._cancel = cancel
        self.inflated = 0
        self.pixels = 0

    def check_cancel(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise DecodeCancelledError("decoding stopped: the request it served is over")

    def inflate(self, nbytes: int, what: str) -> None:
        """Charge ``nbytes`` produced by decompression (or read from an archive)."""
        self.check_cancel()
        self.inflated += nbytes
        if self.inflated > self.limits.max_uncompressed_bytes:
            raise UploadTooLargeError(
                f"{what} inflates past {self.limits.max_uncompressed_bytes} bytes (the "
                "uncompressed limit); send fewer or smaller frames"
            )

    def check_frame(self, height: int, width: int, what: str) -> None:
        """The per-frame pixel limit, before the frame is decoded."""
        pixels = height * width
        if pixels > self.limits.max_pixels_per_frame:
            raise UploadTooLargeError(
                f"{what} has {pixels} pixels; the limit is {self.limits.max_pixels_per_frame} "
                "per frame"
            )

    def check_total(self, pixels: int, what: str) -> None:
        """The work budget: every frame's pixels together (checked up front where known)."""
        if pixels > self.limits.max_total_pixels:
            raise UploadTooLargeError(
                f"{what} holds {pixels} pixels in all; the limit is "
                f"{self.limits.max_total_pixels} pixels per walk (send fewer or smaller "
                "frames)"
            )

    def charge_frame(self, height: int, width: int, what: str) -> None:
        self.check_frame(height, width, what)
        self.pixels += height * width
        self.check_total(self.pixels, "the upload")


# ---------------------------------------------------------------------------- entry points


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
    work = _Work(limits, cancel)
    return _preprocess(_open_bytes(data, filename, work), min_frames, front_end or FrontEnd())


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
    source = _open_path(path, _Work(limits, None))
    return _preprocess(source, min_frames, front_end or FrontEnd())


def read_frames(
    data: bytes, filename: str | None = None, limits: DecodeLimits = DEFAULT_LIMITS
) -> list[NDArray]:
    """The raw frames of an upload in walk order, as decoded (RGB for colour), before any
    segmentation or pretreatment: what the front end starts from."""
    return _ordered(_open_bytes(data, filename, _Work(limits, None)))


def read_frames_from_path(path: Path, limits: DecodeLimits = DEFAULT_LIMITS) -> NDArray:
    """The raw frames of a file or a folder of frames, stacked as ``(T, H, W[, C])``.

    For dataset readers that pretreat raw folders themselves. Frames must share one shape
    (``UploadContentError`` otherwise); use ``decode_path`` for mixed sizes.
    """
    frames = _ordered(_open_path(path, _Work(limits, None)))
    first = frames[0].shape
    for i, frame in enumerate(frames):
        if frame.shape != first:
            raise UploadContentError(
                f"frames differ in size: frame 0 is {first}, frame {i} is {frame.shape}; "
                "stacking needs one size"
            )
    return np.stack(frames)


def _ordered(source: _Source) -> list[NDArray]:
    keyed = sorted(source.frames, key=lambda item: item[0])
    return [np.array(frame) for _key, frame in keyed]  # own, writable copies


def decode_image(data: bytes, what: str, limits: DecodeLimits = DEFAULT_LIMITS) -> NDArray:
    """One PNG / JPEG / BMP (an empty-scene frame) -> array, under the same limits."""
    if len(data) > limits.max_bytes:
        raise UploadTooLargeError(f"{what} is {len(data)} bytes; the limit is {limits.max_bytes}")
    if detect_format(data) != "image":
        raise UploadFormatError(f"{what} must be a PNG, JPEG or BMP image")
    return _decode_image(data, what, _Work(limits, None))


def detect_format(data: bytes, filename: str | None = None) -> Format:
    """The container of ``data`` from its magic bytes; ``UploadFormatError`` when unknown."""
    if not data:
        raise UploadFormatError(f"the upload is empty (0 bytes); send one of: {SUPPORTED_FORMATS}")
    head = data[:16]
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or data[257:262] == b"ustar":
        return "tar"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    if head[4:8] == b"ftyp" or (head[:4] == b"RIFF" and head[8:12] == b"AVI "):
        return "video"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return "video"
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM")):
        return "image"
    named = f" (named {filename!r})" if filename else ""
    raise UploadFormatError(
        f"unrecognised upload format{named}: first bytes {head[:8]!r}; send one of: "
        f"{SUPPORTED_FORMATS}"
    )


# ---------------------------------------------------------------------------- dispatch


def _preprocess(source: _Source, min_frames: int, front_end: FrontEnd) -> PreprocessedSequence:
    """The front end (silhouettes as they are, footage segmented), then the pretreatment.

    Value problems found there become ``UploadContentError``.
    """
    try:
        reading = read_walk(
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
    return network_sequence(reading.sequence, kind=reading.kind, drops=reading.drops)


def _open_bytes(data: bytes, filename: str | None, work: _Work) -> _Source:
    if len(data) > work.limits.max_bytes:
        raise UploadTooLargeError(
            f"the upload is {len(data)} bytes; the limit is {work.limits.max_bytes} bytes"
        )
    fmt = detect_format(data, filename)
    _warn_on_mismatched_name(fmt, filename)
    openers: dict[Format, Callable[[bytes, _Work], _Source]] = {
        "zip": _open_zip,
        "tar": _open_tar,
        "npy": lambda raw, w: _open_npy(raw, "the .npy upload", w),
        "tiff": _open_tiff,
        "video": _open_video,
        "image": lambda raw, w: _Source(iter([(0, _decode_image(raw, "the image", w))])),
    }
    source = openers[fmt](data, work)
    return _Source(_counted(source.frames, work), source.scale)


def _open_path(path: Path, work: _Work) -> _Source:
    if path.is_dir():
        return _Source(_counted(_folder_frames(path, work), work))
    if not path.is_file():
        raise FileNotFoundError(f"no file or folder at {path}")
    size = path.stat().st_size
    if size > work.limits.max_bytes:
        raise UploadTooLargeError(
            f"{path} is {size} bytes; the limit is {work.limits.max_bytes} bytes"
        )
    return _open_bytes(path.read_bytes(), path.name, work)


def _warn_on_mismatched_name(fmt: Format, filename: str | None) -> None:
    if not filename:
        return
    suffix = Path(filename).suffix.lower()
    expected = {
        "zip": {".zip", ".npz"},
        "tar": {".tar", ".gz", ".tgz", ".bz2", ".xz"},
        "npy": {".npy"},
        "tiff": {".tif", ".tiff"},
        "video": {".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm"},
        "image": IMAGE_SUFFIXES,
    }[fmt]
    if suffix and suffix not in expected:
        logger.info("upload %r has %s content; decoding by content", filename, fmt)


def _counted(
    frames: Iterator[tuple[FrameKey, NDArray]], work: _Work
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


# ---------------------------------------------------------------------------- archives


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key that orders digit runs by value: ``f2.png`` < ``f10.png``."""
    parts = re.split(r"([0-9]+)", name.lower())
    # even positions are text, odd positions digit runs, so equal positions compare like types
    key = tuple(int(p) if i % 2 else p for i, p in enumerate(parts))
    return key, name


def _check_member_name(name: str) -> None:
    """Reject names that would escape an extraction folder (we never extract, but a client
    sending them is either broken or probing)."""
    normalised = name.replace("\\", "/")
    if "\x00" in name:
        raise UnsafeArchiveError(f"archive member name {name!r} contains a NUL byte")
    if normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
        raise UnsafeArchiveError(
            f"archive member {name!r} has an absolute path; use paths relative to the archive"
        )
    if ".." in normalised.split("/"):
        raise UnsafeArchiveError(
            f"archive member {name!r} climbs out of the archive with '..'; remove it"
        )


def _is_ignored(name: str) -> bool:
    """Directories, hidden files and macOS resource forks carry no frames."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    return name.endswith("/") or any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _member_kind(name: str) -> Literal["image", "npy", "other"]:
    suffix = Path(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return "npy" if suffix == ".npy" else "other"


def _check_ratio(size: int, compressed: int, what: str, limits: DecodeLimits) -> None:
    if size < RATIO_CHECK_MIN_BYTES:
        return
    ratio = size / max(compressed, 1)
    if ratio > limits.max_compression_ratio:
        raise UploadTooLargeError(
            f"{what} expands {ratio:.0f}:1 ({compressed} -> {size} bytes); the limit is "
            f"{limits.max_compression_ratio:.0f}:1 (possible archive bomb)"
        )


def _open_zip(data: bytes, work: _Work) -> _Source:
    limits = work.limits
    with _reading("the zip archive cannot be read"):
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    if len(members) > limits.max_archive_members:
        raise UploadTooLargeError(
            f"the zip archive has {len(members)} members; the limit is {limits.max_archive_members}"
        )
    declared = 0
    for info in members:
        _check_member_name(info.filename)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise UnsafeArchiveError(f"zip member {info.filename!r} is a symbolic link")
        _check_ratio(info.file_size, info.compress_size, f"zip member {info.filename!r}", limits)
        declared += info.file_size
    if declared > limits.max_uncompressed_bytes:
        raise UploadTooLargeError(
            f"the zip archive declares {declared} uncompressed bytes; the limit is "
            f"{limits.max_uncompressed_bytes}"
        )
    usable = [i for i in members if not i.is_dir() and not _is_ignored(i.filename)]
    arrays = [i for i in usable if _member_kind(i.filename) == "npy"]
    images = [i for i in usable if _member_kind(i.filename) == "image"]
    if arrays and images:
        raise UploadContentError(
            "the zip archive mixes .npy arrays and image frames; send either an .npz or a "
            "zip of PNG/JPEG/BMP frames"
        )
    if arrays:
        return _open_npz(archive, arrays, work)
    if not images:
        found = sorted(i.filename for i in usable)[:5]
        raise UploadContentError(
            f"the zip archive has no PNG/JPEG/BMP frames (found {found or 'nothing'})"
        )
    for info in images:
        _check_frame_file_size(info.file_size, f"zip member {info.filename!r}", limits)
    images.sort(key=lambda i: natural_key(i.filename))
    return _Source(_zip_image_frames(archive, images, work))


def _check_frame_file_size(size: int, what: str, limits: DecodeLimits) -> None:
    """One frame file may be as large as a whole upload, not larger."""
    if size > limits.max_bytes:
        raise UploadTooLargeError(
            f"{what} is {size} bytes; one frame file may be at most {limits.max_bytes} bytes "
            "(the upload limit)"
        )


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, work: _Work) -> bytes:
    """Inflate one image member in chunks, charging the bytes actually produced to ``work``."""
    chunks: list[bytes] = []
    size = 0
    with _ZipMemberStream(archive, info, work, charge=True) as member:
        while chunk := member.read(_CHUNK):
            size += len(chunk)
            _check_frame_file_size(size, f"zip member {info.filename!r}", work.limits)
            chunks.append(chunk)
    return b"".join(chunks)


def _zip_image_frames(
    archive: zipfile.ZipFile, images: list[zipfile.ZipInfo], work: _Work
) -> Iterator[tuple[FrameKey, NDArray]]:
    with archive:
        for index, info in enumerate(images):
            raw = _read_zip_member(archive, info, work)
            yield index, _decode_image(raw, f"zip member {info.filename!r}", work)


class _TarStream:
    """The file object ``tarfile`` streams from: inflates on demand, charging every byte.

    Bytes produced count against the uncompressed limit and the running ratio of a
    compressed stream is checked as it grows, so a bomb is refused after about a megabyte
    of output instead of after inflating it whole.
    """

    def __init__(self, data: bytes, work: _Work) -> None:
        self._raw = io.BytesIO(data)
        self._work = work
        self._produced = 0
        self._compressed = data[257:262] != b"ustar"
        stream: io.BufferedIOBase
        if not self._compressed:
            stream = self._raw
        elif data.startswith(b"\x1f\x8b"):
            stream = gzip.GzipFile(fileobj=self._raw, mode="rb")
        elif data.startswith(b"BZh"):
            stream = bz2.BZ2File(self._raw, mode="rb")
        else:
            stream = lzma.LZMAFile(self._raw, mode="rb")  # noqa: SIM115 (close())
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        wanted = _CHUNK if size < 0 else min(size, _CHUNK)
        try:
            chunk = self._stream.read(wanted)
        except EOFError as exc:
            raise CorruptUploadError(
                "the compressed archive is truncated; send the whole file"
            ) from exc
        except (OSError, zlib.error, lzma.LZMAError, ValueError) as exc:
            raise CorruptUploadError(
                f"the compressed stream cannot be decompressed: {exc}"
            ) from exc
        self._produced += len(chunk)
        self._work.inflate(len(chunk), "the tar archive")
        if self._compressed:
            consumed = self._raw.tell()
            _check_ratio(self._produced, consumed, "the compressed archive", self._work.limits)
        return chunk

    def close(self) -> None:
        self._stream.close()


def _open_tar(data: bytes, work: _Work) -> _Source:
    stream = _TarStream(data, work)
    with _reading("the tar archive cannot be read"):
        # "r|": a forward-only stream; members are read as they come, never all at once
        archive = tarfile.open(fileobj=stream, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115
    return _Source(_tar_image_frames(archive, stream, work))


def _tar_image_frames(
    archive: tarfile.TarFile, stream: _TarStream, work: _Work
) -> Iterator[tuple[FrameKey, NDArray]]:
    """Image members in archive order, keyed by the natural sort of their names."""
    limits = work.limits
    usable: list[str] = []
    frames = 0
    count = 0
    try:
        with archive:
            for member in _tar_members(archive):
                count += 1
                if count > limits.max_archive_members:
                    raise UploadTooLargeError(
                        f"the tar archive has more than {limits.max_archive_members} members "
                        "(the limit)"
                    )
                _check_member_name(member.name)
                if member.issym() or member.islnk():
                    raise UnsafeArchiveError(
                        f"tar member {member.name!r} is a link to {member.linkname!r}; "
                        "send regular files only"
                    )
                if member.isdir() or _is_ignored(member.name):
                    continue
                if not member.isfile():
                    raise UnsafeArchiveError(
                        f"tar member {member.name!r} is a device or fifo; send regular files only"
                    )
                if len(usable) < 5:
                    usable.append(member.name)
                if _member_kind(member.name) != "image":
                    continue
                what = f"tar member {member.name!r}"
                _check_frame_file_size(member.size, what, limits)
                with _reading("the tar archive cannot be read"):
                    handle = archive.extractfile(member)
                    assert handle is not None  # regular files always have a handle
                    content = handle.read()
                frames += 1
                yield natural_key(member.name), _decode_image(content, what, work)
    finally:
        stream.close()
    if not frames:
        raise UploadContentError(
            f"the tar archive has no PNG/JPEG/BMP frames (found {sorted(usable) or 'nothing'})"
        )


def _tar_members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The archive's members as tarfile parses them from the stream."""
    members = iter(archive)
    while True:
        with _reading("the tar archive cannot be read"):
            member = next(members, None)
        if member is None:
            return
        yield member


def _folder_frames(folder: Path, work: _Work) -> Iterator[tuple[FrameKey, NDArray]]:
    limits = work.limits
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not _is_ignored(p.name) and _member_kind(p.name) == "image"
    ]
    if not files:
        raise UploadContentError(f"{folder} has no PNG/JPEG/BMP frames")
    if len(files) > limits.max_frames:
        raise UploadTooLargeError(
            f"{folder} has {len(files)} frames; the limit is {limits.max_frames}"
        )
    files.sort(key=lambda p: natural_key(p.name))
    for index, path in enumerate(files):
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise UploadTooLargeError(f"{path} is {size} bytes; the limit is {limits.max_bytes}")
        yield index, _decode_image(path.read_bytes(), str(path), work)


# ---------------------------------------------------------------------------- arrays


@dataclass(frozen=True)
class _NpyHeader:
    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def frame_bytes(self) -> int:
        return int(np.prod(self.frame_shape)) * self.dtype.itemsize

    @property
    def data_bytes(self) -> int:
        return self.shape[0] * self.frame_bytes


def _read_npy_header(handle: _Reader, what: str, work: _Work) -> _NpyHeader:
    """Parse and check an .npy header (dtype, shape, sizes, pixel budget) before any data."""
    failure = f"{what} has an unreadable .npy header"
    with _reading(failure):
        major, _minor = np.lib.format.read_magic(handle)
    if major not in (1, 2, 3):
        raise CorruptUploadError(f"{failure}: unknown .npy version {major}")
    with _reading(failure):
        read_header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(handle)
    if dtype.kind not in "biuf" or dtype.names is not None or dtype.subdtype is not None:
        raise UploadContentError(
            f"{what} has dtype {dtype}; allowed are bool, integers and floats "
            "(object, complex, string and structured arrays are refused)"
        )
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)):
        raise UploadContentError(
            f"{what} has shape {shape}; expected (T, H, W) or (T, H, W, C) with C in 1, 3, 4"
        )
    frames, height, width = shape[:3]
    if frames == 0 or height == 0 or width == 0:
        raise UploadContentError(f"{what} has shape {shape}: it contains no frames or no pixels")
    if frames > work.limits.max_frames:
        raise UploadTooLargeError(
            f"{what} has {frames} frames; the limit is {work.limits.max_frames}"
        )
    work.check_frame(height, width, f"each frame of {what}")
    work.check_total(frames * height * width, what)
    return _NpyHeader(tuple(shape), bool(fortran), dtype)


def _open_npy(raw: bytes, what: str, work: _Work) -> _Source:
    """An in-memory .npy, read in place: the frames are views of the upload's own bytes."""
    handle = io.BytesIO(raw)
    header = _read_npy_header(handle, what, work)
    offset = handle.tell()
    available = len(raw) - offset
    if available != header.data_bytes:
        raise CorruptUploadError(
            f"{what} declares shape {header.shape} of {header.dtype} ({header.data_bytes} "
            f"bytes) but carries {available} bytes of data"
        )
    array = np.frombuffer(
        raw, dtype=header.dtype, count=int(np.prod(header.shape)), offset=offset
    ).reshape(header.shape, order="F" if header.fortran else "C")
    return _Source(enumerate(array), _array_scale(array))


def _array_scale(values: NDArray) -> float:
    try:
        return value_scale(values)
    except InvalidSequenceError as exc:
        raise UploadContentError(str(exc)) from exc


def _open_npz(archive: zipfile.ZipFile, arrays: list[zipfile.ZipInfo], work: _Work) -> _Source:
    """The walk's array of an .npz, streamed from its zip member twice: once for the value
    range (the scale is decided for the whole array), once for the frames themselves."""
    keys = {i.filename[: -len(".npy")]: i for i in arrays}
    if len(keys) == 1:
        key = next(iter(keys))
    elif NPZ_KEY in keys:
        key = NPZ_KEY
    else:
        archive.close()
        raise UploadContentError(
            f"the .npz holds arrays {sorted(keys)}; store a single array or name the "
            f"silhouettes {NPZ_KEY!r}"
        )
    info = keys[key]
    what = f"npz array {key!r}"
    try:
        with _ZipMemberStream(archive, info, work, charge=True) as stream:
            header = _read_npy_header(stream, what, work)
            if header.fortran:
                raise UploadContentError(
                    f"{what} is stored in Fortran order, which cannot be read frame by frame; "
                    "save it C-ordered (np.ascontiguousarray)"
                )
            scale = 255.0
            for frame in _npy_frames(stream, header, what):
                scale = min(scale, _array_scale(frame))
            if stream.read(1):
                raise CorruptUploadError(
                    f"{what} carries more data than its shape {header.shape} declares"
                )
    except BaseException:
        archive.close()
        raise
    return _Source(_npz_frames(archive, info, header, what, work), scale)


def _npz_frames(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    header: _NpyHeader,
    what: str,
    work: _Work,
) -> Iterator[tuple[FrameKey, NDArray]]:
    """Second pass over an npz member (already charged and checked by the first)."""
    with archive, _ZipMemberStream(archive, info, work, charge=False) as stream:
        _read_npy_header(stream, what, work)
        yield from enumerate(_npy_frames(stream, header, what))


def _npy_frames(stream: _Reader, header: _NpyHeader, what: str) -> Iterator[NDArray]:
    for index in range(header.shape[0]):
        raw = _read_exact(stream, header.frame_bytes)
        if len(raw) != header.frame_bytes:
            raise CorruptUploadError(
                f"{what} declares shape {header.shape} of {header.dtype} ({header.data_bytes} "
                f"bytes) but its data ends in frame {index}"
            )
        yield np.frombuffer(raw, dtype=header.dtype).reshape(header.frame_shape)


def _read_exact(stream: _Reader, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = stream.read(min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _ZipMemberStream:
    """A zip member read in chunks: inflated bytes charged to the work (``charge``), the
    cancel event checked between chunks, and zip errors reported as a corrupt upload."""

    def __init__(
        self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, work: _Work, *, charge: bool
    ) -> None:
        self._what = f"zip member {info.filename!r}"
        self._work = work
        self._charge = charge
        with _reading(f"{self._what} cannot be read"):
            self._member = archive.open(info)

    def read(self, size: int = -1) -> bytes:
        self._work.check_cancel()
        with _reading(f"{self._what} cannot be read"):
            chunk = self._member.read(_CHUNK if size < 0 else min(size, _CHUNK))
        if self._charge:
            self._work.inflate(len(chunk), self._what)
        return chunk

    def __enter__(self) -> _ZipMemberStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._member.close()


# ---------------------------------------------------------------------------- images


def _decode_image(raw: bytes, what: str, work: _Work) -> NDArray:
    """PNG / JPEG / BMP bytes -> array; the size in the header is checked before decoding."""
    failure = f"{what} is not a readable PNG/JPEG/BMP image"
    try:
        with _reading(failure):
            image = Image.open(io.BytesIO(raw), formats=("PNG", "JPEG", "BMP"))
        with image:
            width, height = image.size
            work.check_frame(height, width, what)
            work.check_total(work.pixels + height * width, "the upload")
            with _reading(failure):
                image.load()
                return _image_array(image)
    except Image.DecompressionBombError as exc:
        raise UploadTooLargeError(f"{what} is too large to decode: {exc}") from exc


def _image_array(image: Image.Image) -> NDArray:
    """A loaded Pillow image -> ``(H, W)`` or ``(H, W, 3|4)`` array in its own value range."""
    mode = image.mode
    if mode in ("1", "L", "I", "F", "RGB", "RGBA") or mode.startswith("I;16"):
        return np.asarray(image)
    if mode in ("P", "PA", "LA", "La", "RGBa"):
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def _open_tiff(data: bytes, work: _Work) -> _Source:
    """One frame per TIFF page, with each page's size checked before it is decoded."""
    import tifffile

    with _reading("the TIFF cannot be read", _TIFF_FAILURES):
        tiff = tifffile.TiffFile(io.BytesIO(data))
    return _Source(_tiff_pages(tiff, work))


def _tiff_pages(tiff: object, work: _Work) -> Iterator[tuple[FrameKey, NDArray]]:
    import tifffile

    assert isinstance(tiff, tifffile.TiffFile)
    limits = work.limits
    with tiff:
        pages = iter(tiff.pages)
        decoded = 0
        while True:
            failure = f"TIFF page {decoded} cannot be decoded"
            with _reading(failure, _TIFF_FAILURES):
                entry = next(pages, None)
            if entry is None:
                break
            if decoded >= limits.max_frames:
                raise UploadTooLargeError(
                    f"the TIFF has more than {limits.max_frames} pages (the limit)"
                )
            with _reading(failure, _TIFF_FAILURES):
                page = entry if isinstance(entry, tifffile.TiffPage) else entry.aspage()
                # int(): a malformed tag can hand back a tuple where a number belongs
                height, width = int(page.imagelength), int(page.imagewidth)
                nbytes = int(page.nbytes)
            work.check_frame(height, width, f"TIFF page {decoded}")
            work.inflate(nbytes, f"TIFF page {decoded}")
            with _reading(failure, _TIFF_FAILURES):
                array = page.asarray()
            if page.axes.startswith("S") and array.ndim == 3:
                array = np.moveaxis(array, 0, -1)  # planar [C, H, W] -> [H, W, C]
            yield decoded, array
            decoded += 1
        if decoded == 0:
            raise CorruptUploadError("the TIFF has no readable pages")


# ---------------------------------------------------------------------------- video


def _video_suffix(data: bytes) -> str:
    if data[4:8] == b"ftyp":
        return ".mp4"
    return ".avi" if data[:4] == b"RIFF" else ".mkv"


def _open_video(data: bytes, work: _Work) -> _Source:
    return _Source(_video_frames(data, work))


def _video_frames(data: bytes, work: _Work) -> Iterator[tuple[FrameKey, NDArray]]:
    """Decode a mask video frame by frame through OpenCV (FFmpeg needs a real file)."""
    import cv2

    with tempfile.TemporaryDirectory(prefix="gaitid-video-") as folder:
        path = Path(folder) / f"upload{_video_suffix(data)}"
        path.write_bytes(data)
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            if not capture.isOpened():
                raise CorruptUploadError(
                    "the video cannot be opened; send an mp4/avi/mkv of mask frames"
                )
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            work.check_frame(height, width, "each video frame")
            decoded = 0
            while True:
                work.check_total(work.pixels + height * width, "the video")
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                yield decoded, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # every source is RGB
                decoded += 1
            if decoded == 0:
                raise CorruptUploadError("the video has no decodable frames")
        finally:
            capture.release()
