"""What every decoder of ``gaitid.decode`` shares: the limits, one decode's running totals
against them, the raw-frame source a decoder returns, and the turning of a third-party
decoder's failure into ``CorruptUploadError``."""

from __future__ import annotations

import lzma
import re
import struct
import tarfile
import threading
import tokenize
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Protocol

from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from gaitid.errors import (
    CorruptUploadError,
    DecodeCancelledError,
    UploadError,
    UploadTooLargeError,
)
from gaitid.preprocess import FrameKey

MiB: Final = 1 << 20
#: Bytes inflated (or read) per step: between two steps the cancel event is checked.
CHUNK: Final = 1 * MiB

#: What the third-party decoders raise on malformed data: Pillow (``OSError``, which
#: ``UnidentifiedImageError`` is, ``ValueError``, ``EOFError``, ``SyntaxError``,
#: ``struct.error``), zipfile and tarfile (``BadZipFile``, ``TarError``, ``EOFError``, and
#: ``NotImplementedError`` for an unknown compression method), zlib and lzma, numpy's .npy
#: header reader (``ValueError``; the tokenizer's ``TokenError``) and tifffile
#: (``TiffFileError``, a ``ValueError``). Only calls into those libraries are wrapped
#: (``reading``): an error of our own (``TypeError``, ``KeyError``, ...) is a bug, and the
#: service answers it with a logged 500, never with "corrupt upload".
DECODER_FAILURES: Final = (
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


class Reader(Protocol):
    """The part of a binary file that streaming readers need."""

    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class Source:
    """What a decoder returns: raw frames with the key that orders them, lazily.

    ``scale`` is the value scale decided for a whole array (npy/npz), ``None`` for frames
    that each decide their own (images, video).
    """

    frames: Iterator[tuple[FrameKey, NDArray]]
    scale: float | None = None


@contextmanager
def reading(failure: str, also: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """A third-party decoder's failure inside the block -> ``CorruptUploadError``
    (``"{failure}: {exc}"``); our own errors pass through unchanged. ``also``: what one
    library raises besides ``DECODER_FAILURES``."""
    try:
        yield
    except (UploadError, DecodeCancelledError):
        raise  # a limit or the cancel event, raised from a stream the library read from
    except Exception as exc:
        if isinstance(exc, DECODER_FAILURES + also):
            raise CorruptUploadError(f"{failure}: {exc}") from exc
        raise


class Work:
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

    def check_frame_file(self, size: int, what: str) -> None:
        """One frame file (archive member, file of a folder) may be as large as a whole
        upload, not larger."""
        if size > self.limits.max_bytes:
            raise UploadTooLargeError(
                f"{what} is {size} bytes; one frame file may be at most "
                f"{self.limits.max_bytes} bytes (the upload limit)"
            )


def natural_key(name: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key that orders digit runs by value: ``f2.png`` < ``f10.png``."""
    parts = re.split(r"([0-9]+)", name.lower())
    # even positions are text, odd positions digit runs, so equal positions compare like types
    key = tuple(int(p) if i % 2 else p for i, p in enumerate(parts))
    return key, name
