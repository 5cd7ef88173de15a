"""The upload formats: one table that detection, messages, the CLI and the API read.

A format is recognised by its magic bytes (``detect_format``); the filename is only a hint,
logged when it disagrees, so a misnamed file still decodes and a disguised one cannot pick
its decoder. Each row's decoder is the module of ``gaitid.decode`` named after it
(``gaitid/decode/tiff.py`` for ``"tiff"``), whose ``open_upload`` yields the raw frames.
Adding a format is one row here and one module there. Standard library only, so the CLI and
the API can print the list without loading any decoder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from gaitid.errors import UploadFormatError

logger = logging.getLogger(__name__)

FormatName = Literal["zip", "tar", "npy", "tiff", "video", "image"]

#: Image files that frames may come as (in archives and folders, or as a one-frame walk).
IMAGE_SUFFIXES: Final = frozenset({".png", ".jpg", ".jpeg", ".bmp"})


@dataclass(frozen=True)
class UploadFormat:
    """One supported container: its name, how people call it, its usual suffixes, its magic."""

    name: FormatName
    summary: str
    suffixes: frozenset[str]
    magic: Callable[[bytes], bool]


#: Every supported upload, in the order magic bytes are tried.
FORMATS: Final[tuple[UploadFormat, ...]] = (
    UploadFormat(
        "npy",
        ".npy array (T, H, W[, C])",
        frozenset({".npy"}),
        lambda data: data.startswith(b"\x93NUMPY"),
    ),
    UploadFormat(
        "zip",
        "zip of PNG/JPEG/BMP frames, or .npz",
        frozenset({".zip", ".npz"}),
        lambda data: data.startswith((b"PK\x03\x04", b"PK\x05\x06")),
    ),
    UploadFormat(
        "tar",
        "tar(.gz/.bz2/.xz) of PNG/JPEG/BMP frames",
        frozenset({".tar", ".gz", ".tgz", ".bz2", ".xz"}),
        lambda data: (
            data.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")) or data[257:262] == b"ustar"
        ),
    ),
    UploadFormat(
        "tiff",
        "multi-page TIFF",
        frozenset({".tif", ".tiff"}),
        lambda data: data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")),
    ),
    UploadFormat(
        "video",
        "mp4/mov/avi/mkv/webm video",
        frozenset({".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm"}),
        lambda data: (
            data[4:8] == b"ftyp"
            or (data[:4] == b"RIFF" and data[8:12] == b"AVI ")
            or data.startswith(b"\x1aE\xdf\xa3")
        ),  # Matroska / WebM
    ),
    UploadFormat(
        "image",
        "a single PNG/JPEG/BMP image",
        IMAGE_SUFFIXES,
        lambda data: data.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM")),
    ),
)

#: The list of supported formats, for messages, help texts and the API description.
SUPPORTED_FORMATS: Final = ", ".join(f.summary for f in FORMATS)


def detect_format(data: bytes, filename: str | None = None) -> FormatName:
    """The container of ``data`` from its magic bytes; ``UploadFormatError`` when unknown.

    A ``filename`` whose suffix belongs to another format is logged, never trusted.
    """
    if not data:
        raise UploadFormatError(f"the upload is empty (0 bytes); send one of: {SUPPORTED_FORMATS}")
    for fmt in FORMATS:
        if fmt.magic(data):
            suffix = Path(filename).suffix.lower() if filename else ""
            if suffix and suffix not in fmt.suffixes:
                logger.info("upload %r has %s content; decoding by content", filename, fmt.name)
            return fmt.name
    named = f" (named {filename!r})" if filename else ""
    raise UploadFormatError(
        f"unrecognised upload format{named}: first bytes {data[:8]!r}; send one of: "
        f"{SUPPORTED_FORMATS}"
    )
