"""Upload decoding: untrusted bytes (or a local file / folder) -> the network's ``(T, 64, 44)``.

Supported containers, recognised by their magic bytes (the filename is only a hint used in
messages, so a misnamed file still decodes and a disguised one cannot pick its decoder):

- zip or tar (plain, .gz, .bz2, .xz) of PNG / JPEG / BMP frames, ordered by the natural sort
  of member names (``f2.png`` before ``f10.png``); directories, hidden members (any path
  part starting with ``.``) and ``__MACOSX`` are skipped, members of other types too.
- ``.npy``: one ``(T, H, W)`` or ``(T, H, W, C)`` array of bool / integers / floats, loaded
  with ``allow_pickle=False`` after its header was checked against the limits.
- ``.npz``: a zip of ``.npy`` members: a single array, or the one stored under
  ``NPZ_KEY`` (``"silhouettes"``) when there are several.
- video of masks (mp4 / mov, avi, mkv / webm) through OpenCV's FFmpeg backend from a
  temporary file.
- multi-page TIFF (one page per frame; uncompressed or deflate).
- a single PNG / JPEG / BMP image (a one-frame walk).

Nothing is ever unpickled and nothing is extracted to disk. Every malformed input raises a
subclass of ``gaitid.errors.UploadError`` whose message says what was wrong and what is
allowed; limits (``DecodeLimits``) are enforced before the expensive step wherever a header
announces the size: total bytes, frames, pixels per frame, archive members, uncompressed
bytes (declared sizes first, then bytes actually read) and the compression ratio of large
members (zip and compressed-tar bombs). Frames are decoded and pretreated one at a time, so
memory stays bounded by the limits rather than by the raw video size.
"""

from __future__ import annotations

import bz2
import io
import logging
import lzma
import re
import struct
import tarfile
import tempfile
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from gaitid.errors import (
    CorruptUploadError,
    InvalidSequenceError,
    TooFewFramesError,
    UnsafeArchiveError,
    UploadContentError,
    UploadError,
    UploadFormatError,
    UploadTooLargeError,
)
from gaitid.preprocess import PreprocessedSequence, preprocess_sequence

logger = logging.getLogger(__name__)

MiB: Final = 1 << 20
#: Key of the silhouette array in an npz that holds more than one array.
NPZ_KEY: Final = "silhouettes"
IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
#: Compression ratios are only judged on members at least this large: small members with
#: a high ratio (blank masks deflate ~1000:1) are harmless.
RATIO_CHECK_MIN_BYTES: Final = 1 * MiB

#: Errors third-party decoders (Pillow, tifffile, zipfile, numpy) raise on malformed data.
_DECODER_FAILURES: Final = (
    ValueError,
    OSError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    RuntimeError,
    NotImplementedError,
    SyntaxError,
    struct.error,
    zlib.error,
    lzma.LZMAError,
    tokenize.TokenError,  # numpy parses .npy headers with the Python tokenizer
)

Format = Literal["zip", "tar", "npy", "tiff", "video", "image"]
SUPPORTED_FORMATS: Final = (
    "zip or tar(.gz/.bz2/.xz) of PNG/JPEG/BMP frames, .npy, .npz, mp4/avi/mkv video, "
    "multi-page TIFF, a single PNG/JPEG/BMP"
)


class DecodeLimits(BaseModel):
    """Upper bounds applied while decoding; anything over raises ``UploadTooLargeError``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_bytes: int = Field(default=64 * MiB, gt=0, description="size of the upload itself")
    max_frames: int = Field(default=1000, gt=0, description="frames in one walk (CASIA-B: ~80)")
    max_pixels_per_frame: int = Field(
        default=1 << 21, gt=0, description="H*W of one frame; 2 Mpx admits 1920x1080"
    )
    max_archive_members: int = Field(default=2000, gt=0, description="entries in a zip / tar")
    max_uncompressed_bytes: int = Field(
        default=256 * MiB, gt=0, description="bytes inflated from an archive or compressed stream"
    )
    max_compression_ratio: float = Field(
        default=500.0, gt=1, description="uncompressed/compressed for members over 1 MiB (bombs)"
    )


DEFAULT_LIMITS: Final = DecodeLimits()

#: What a container opener returns: a whole array (npy/npz) or frames decoded one by one.
_Source = NDArray | Iterator[NDArray]
#: The same after the frame-count checks, ready for ``preprocess_sequence``.
Frames = NDArray | Generator[NDArray, None, None]


# ---------------------------------------------------------------------------- entry points


def decode_upload(
    data: bytes,
    filename: str | None = None,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
    min_frames: int = 1,
) -> PreprocessedSequence:
    """Bytes of any supported format -> uint8 ``(T, 64, 44)`` via ``preprocess_sequence``.

    Raises ``UploadError`` subclasses for malformed or oversized uploads and
    ``TooFewFramesError`` when fewer than ``min_frames`` frames have enough foreground.
    """
    return _preprocess(_open_bytes(data, filename, limits), min_frames)


def decode_path(
    path: Path, *, limits: DecodeLimits = DEFAULT_LIMITS, min_frames: int = 1
) -> PreprocessedSequence:
    """A file of any upload format, or a folder of image frames -> ``(T, 64, 44)``.

    The path ``gaitid preprocess`` runs; identical to ``decode_upload`` on the file's bytes.
    """
    return _preprocess(_open_path(path, limits), min_frames)


def read_frames_from_path(path: Path, limits: DecodeLimits = DEFAULT_LIMITS) -> NDArray:
    """The raw frames of a file or a folder of frames, stacked as ``(T, H, W[, C])``.

    For dataset readers that pretreat raw folders themselves. Frames must share one shape
    (``UploadContentError`` otherwise); use ``decode_path`` for mixed sizes.
    """
    source = _open_path(path, limits)
    if isinstance(source, np.ndarray):
        return source
    with closing(source):
        frames = list(source)
    first = frames[0].shape
    for i, frame in enumerate(frames):
        if frame.shape != first:
            raise UploadContentError(
                f"frames differ in size: frame 0 is {first}, frame {i} is {frame.shape}; "
                "stacking needs one size"
            )
    return np.stack(frames)


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


def _preprocess(source: Frames, min_frames: int) -> PreprocessedSequence:
    """Run the shared pretreatment; value problems found there become ``UploadContentError``."""
    try:
        if isinstance(source, np.ndarray):
            return preprocess_sequence(source, min_frames=min_frames)
        with closing(source):
            return preprocess_sequence(source, min_frames=min_frames)
    except (UploadError, TooFewFramesError):
        raise
    except InvalidSequenceError as exc:
        raise UploadContentError(str(exc)) from exc


def _open_bytes(data: bytes, filename: str | None, limits: DecodeLimits) -> Frames:
    if len(data) > limits.max_bytes:
        raise UploadTooLargeError(
            f"the upload is {len(data)} bytes; the limit is {limits.max_bytes} bytes"
        )
    fmt = detect_format(data, filename)
    _warn_on_mismatched_name(fmt, filename)
    openers: dict[Format, Callable[[bytes, DecodeLimits], _Source]] = {
        "zip": _open_zip,
        "tar": _open_tar,
        "npy": lambda raw, lim: _parse_npy(raw, "the .npy upload", lim),
        "tiff": _open_tiff,
        "video": _open_video,
        "image": lambda raw, lim: iter([_decode_image(raw, "the image", lim)]),
    }
    source = openers[fmt](data, limits)
    return source if isinstance(source, np.ndarray) else _counted(source, limits)


def _open_path(path: Path, limits: DecodeLimits) -> Frames:
    if path.is_dir():
        return _counted(_folder_frames(path, limits), limits)
    if not path.is_file():
        raise FileNotFoundError(f"no file or folder at {path}")
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise UploadTooLargeError(f"{path} is {size} bytes; the limit is {limits.max_bytes} bytes")
    return _open_bytes(path.read_bytes(), path.name, limits)


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


def _counted(frames: Iterator[NDArray], limits: DecodeLimits) -> Generator[NDArray, None, None]:
    """Enforce the frame-count limit and reject an upload with no frames at all."""
    count = 0
    try:
        for frame in frames:
            count += 1
            if count > limits.max_frames:
                raise UploadTooLargeError(
                    f"the upload has more than {limits.max_frames} frames (the limit)"
                )
            if frame.ndim < 2:
                raise UploadContentError(f"frame {count - 1} has shape {frame.shape}")
            _check_pixels(frame.shape[0] * frame.shape[1], f"frame {count - 1}", limits)
            yield frame
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()  # release files, temporary folders and decoders early
    if count == 0:
        raise UploadContentError("the upload contains no frames")


def _check_pixels(pixels: int, what: str, limits: DecodeLimits) -> None:
    if pixels > limits.max_pixels_per_frame:
        raise UploadTooLargeError(
            f"{what} has {pixels} pixels; the limit is {limits.max_pixels_per_frame} per frame"
        )


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


class _Budget:
    """Running total of bytes inflated from one upload against ``max_uncompressed_bytes``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, nbytes: int, what: str) -> None:
        self.used += nbytes
        if self.used > self.limit:
            raise UploadTooLargeError(
                f"{what} inflates past {self.limit} bytes (the uncompressed limit); "
                "send fewer or smaller frames"
            )


def _check_ratio(size: int, compressed: int, what: str, limits: DecodeLimits) -> None:
    if size < RATIO_CHECK_MIN_BYTES:
        return
    ratio = size / max(compressed, 1)
    if ratio > limits.max_compression_ratio:
        raise UploadTooLargeError(
            f"{what} expands {ratio:.0f}:1 ({compressed} -> {size} bytes); the limit is "
            f"{limits.max_compression_ratio:.0f}:1 (possible archive bomb)"
        )


def _open_zip(data: bytes, limits: DecodeLimits) -> _Source:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, *_DECODER_FAILURES) as exc:
        raise CorruptUploadError(f"the zip archive cannot be read: {exc}") from exc
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
    budget = _Budget(limits.max_uncompressed_bytes)
    if arrays:
        return _npz_array(archive, arrays, budget, limits)
    if not images:
        found = sorted(i.filename for i in usable)[:5]
        raise UploadContentError(
            f"the zip archive has no PNG/JPEG/BMP frames (found {found or 'nothing'})"
        )
    images.sort(key=lambda i: natural_key(i.filename))
    return _zip_image_frames(archive, images, budget, limits)


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    """Inflate one member in chunks, charging the bytes actually produced to ``budget``."""
    chunks: list[bytes] = []
    what = f"zip member {info.filename!r}"
    try:
        with archive.open(info) as member:
            while chunk := member.read(MiB):
                budget.take(len(chunk), what)
                chunks.append(chunk)
    except UploadError:
        raise
    except (zipfile.BadZipFile, *_DECODER_FAILURES) as exc:
        raise CorruptUploadError(f"{what} cannot be read: {exc}") from exc
    return b"".join(chunks)


def _zip_image_frames(
    archive: zipfile.ZipFile,
    images: list[zipfile.ZipInfo],
    budget: _Budget,
    limits: DecodeLimits,
) -> Iterator[NDArray]:
    with archive:
        for info in images:
            raw = _read_zip_member(archive, info, budget)
            yield _decode_image(raw, f"zip member {info.filename!r}", limits)


def _npz_array(
    archive: zipfile.ZipFile,
    arrays: list[zipfile.ZipInfo],
    budget: _Budget,
    limits: DecodeLimits,
) -> NDArray:
    keys = {i.filename[: -len(".npy")]: i for i in arrays}
    if len(keys) == 1:
        key = next(iter(keys))
    elif NPZ_KEY in keys:
        key = NPZ_KEY
    else:
        raise UploadContentError(
            f"the .npz holds arrays {sorted(keys)}; store a single array or name the "
            f"silhouettes {NPZ_KEY!r}"
        )
    with archive:
        raw = _read_zip_member(archive, keys[key], budget)
    return _parse_npy(raw, f"npz array {key!r}", limits)


def _inflate(data: bytes, limits: DecodeLimits) -> bytes:
    """Decompress a .gz / .bz2 / .xz stream without ever producing more than the limit."""
    cap = limits.max_uncompressed_bytes + 1
    try:
        if data.startswith(b"\x1f\x8b"):
            gzip_stream = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
            out, finished = gzip_stream.decompress(data, cap), gzip_stream.eof
        else:
            stream = bz2.BZ2Decompressor() if data.startswith(b"BZh") else lzma.LZMADecompressor()
            out, finished = stream.decompress(data, max_length=cap), stream.eof
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise CorruptUploadError(f"the compressed stream cannot be decompressed: {exc}") from exc
    if len(out) > limits.max_uncompressed_bytes:
        raise UploadTooLargeError(
            f"the compressed archive inflates past {limits.max_uncompressed_bytes} bytes "
            "(the uncompressed limit)"
        )
    if not finished:
        raise CorruptUploadError("the compressed archive is truncated; send the whole file")
    _check_ratio(len(out), len(data), "the compressed archive", limits)
    return out


def _open_tar(data: bytes, limits: DecodeLimits) -> _Source:
    raw = data if data[257:262] == b"ustar" else _inflate(data, limits)
    try:
        archive = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")  # noqa: SIM115 (closed below)
    except (tarfile.TarError, *_DECODER_FAILURES) as exc:
        raise CorruptUploadError(f"the tar archive cannot be read: {exc}") from exc
    frames: list[tuple[str, bytes]] = []
    usable: list[str] = []
    budget = _Budget(limits.max_uncompressed_bytes)
    count = 0
    try:
        with archive:
            for member in archive:
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
                usable.append(member.name)
                if _member_kind(member.name) != "image":
                    continue
                budget.take(member.size, f"tar member {member.name!r}")
                handle = archive.extractfile(member)
                assert handle is not None  # regular files always have a handle
                frames.append((member.name, handle.read()))
    except UploadError:
        raise
    except (tarfile.TarError, *_DECODER_FAILURES) as exc:
        raise CorruptUploadError(f"the tar archive cannot be read: {exc}") from exc
    if not frames:
        raise UploadContentError(
            f"the tar archive has no PNG/JPEG/BMP frames (found {sorted(usable)[:5] or 'nothing'})"
        )
    frames.sort(key=lambda item: natural_key(item[0]))
    return (_decode_image(content, f"tar member {name!r}", limits) for name, content in frames)


def _folder_frames(folder: Path, limits: DecodeLimits) -> Iterator[NDArray]:
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
    for path in files:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise UploadTooLargeError(f"{path} is {size} bytes; the limit is {limits.max_bytes}")
        yield _decode_image(path.read_bytes(), str(path), limits)


# ---------------------------------------------------------------------------- arrays


def _parse_npy(raw: bytes, what: str, limits: DecodeLimits) -> NDArray:
    """Check an .npy header (dtype, shape, sizes) before reading any data, then load it."""
    handle = io.BytesIO(raw)
    try:
        major, _minor = np.lib.format.read_magic(handle)
        if major == 1:
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif major in (2, 3):
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unknown .npy version {major}")
    except _DECODER_FAILURES as exc:
        raise CorruptUploadError(f"{what} has an unreadable .npy header: {exc}") from exc
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
    if frames > limits.max_frames:
        raise UploadTooLargeError(f"{what} has {frames} frames; the limit is {limits.max_frames}")
    _check_pixels(height * width, f"each frame of {what}", limits)
    expected = int(np.prod(shape)) * dtype.itemsize
    available = len(raw) - handle.tell()
    if available != expected:
        raise CorruptUploadError(
            f"{what} declares shape {shape} of {dtype} ({expected} bytes) but carries "
            f"{available} bytes of data"
        )
    try:
        # the header was validated above; np.load still refuses pickles on its own
        return np.load(io.BytesIO(raw), allow_pickle=False)
    except _DECODER_FAILURES as exc:
        raise CorruptUploadError(f"{what} cannot be loaded: {exc}") from exc


# ---------------------------------------------------------------------------- images


def _decode_image(raw: bytes, what: str, limits: DecodeLimits) -> NDArray:
    """PNG / JPEG / BMP bytes -> array; the size in the header is checked before decoding."""
    try:
        with Image.open(io.BytesIO(raw), formats=("PNG", "JPEG", "BMP")) as image:
            width, height = image.size
            _check_pixels(width * height, what, limits)
            image.load()
            return _image_array(image)
    except UploadError:
        raise
    except Image.DecompressionBombError as exc:
        raise UploadTooLargeError(f"{what} is too large to decode: {exc}") from exc
    except (UnidentifiedImageError, *_DECODER_FAILURES) as exc:
        raise CorruptUploadError(f"{what} is not a readable PNG/JPEG/BMP image: {exc}") from exc


def _image_array(image: Image.Image) -> NDArray:
    """A loaded Pillow image -> ``(H, W)`` or ``(H, W, 3|4)`` array in its own value range."""
    mode = image.mode
    if mode in ("1", "L", "I", "F", "RGB", "RGBA") or mode.startswith("I;16"):
        return np.asarray(image)
    if mode in ("P", "PA", "LA", "La", "RGBa"):
        return np.asarray(image.convert("RGBA"))
    return np.asarray(image.convert("RGB"))


def _open_tiff(data: bytes, limits: DecodeLimits) -> Iterator[NDArray]:
    """One frame per TIFF page, with each page's size checked before it is decoded."""
    import tifffile

    budget = _Budget(limits.max_uncompressed_bytes)
    try:
        tiff = tifffile.TiffFile(io.BytesIO(data))
    except (tifffile.TiffFileError, *_DECODER_FAILURES) as exc:
        raise CorruptUploadError(f"the TIFF cannot be read: {exc}") from exc
    with tiff:
        decoded = 0
        try:
            for index, entry in enumerate(tiff.pages):
                if index >= limits.max_frames:
                    raise UploadTooLargeError(
                        f"the TIFF has more than {limits.max_frames} pages (the limit)"
                    )
                page = entry if isinstance(entry, tifffile.TiffPage) else entry.aspage()
                _check_pixels(page.imagewidth * page.imagelength, f"TIFF page {index}", limits)
                budget.take(int(page.nbytes), f"TIFF page {index}")
                array = page.asarray()
                if page.axes.startswith("S") and array.ndim == 3:
                    array = np.moveaxis(array, 0, -1)  # planar [C, H, W] -> [H, W, C]
                decoded += 1
                yield array
        except UploadError:
            raise
        except (tifffile.TiffFileError, *_DECODER_FAILURES) as exc:
            raise CorruptUploadError(f"TIFF page {decoded} cannot be decoded: {exc}") from exc
        if decoded == 0:
            raise CorruptUploadError("the TIFF has no readable pages")


# ---------------------------------------------------------------------------- video


def _video_suffix(data: bytes) -> str:
    if data[4:8] == b"ftyp":
        return ".mp4"
    return ".avi" if data[:4] == b"RIFF" else ".mkv"


def _open_video(data: bytes, limits: DecodeLimits) -> Iterator[NDArray]:
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
            _check_pixels(width * height, "each video frame", limits)
            decoded = 0
            while True:
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                decoded += 1
                yield frame
            if decoded == 0:
                raise CorruptUploadError("the video has no decodable frames")
        finally:
            capture.release()
