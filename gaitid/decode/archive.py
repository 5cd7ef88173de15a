"""Checks that zip and tar uploads share: member names, ignored members, what a member
holds, and the compression ratio of large members (bombs)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Literal

from gaitid.decode.work import DecodeLimits, MiB
from gaitid.errors import UnsafeArchiveError, UploadTooLargeError
from gaitid.formats import IMAGE_SUFFIXES

#: Compression ratios are only judged on members at least this large: small members with
#: a high ratio (blank masks deflate ~1000:1) are harmless.
RATIO_CHECK_MIN_BYTES: Final = 1 * MiB


def check_member_name(name: str) -> None:
    """Reject names that would escape an extraction folder (we never extract, but a client
    sending them is either broken or probing)."""
    normalized = name.replace("\\", "/")
    if "\x00" in name:
        raise UnsafeArchiveError(f"archive member name {name!r} contains a NUL byte")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        raise UnsafeArchiveError(
            f"archive member {name!r} has an absolute path; use paths relative to the archive"
        )
    if ".." in normalized.split("/"):
        raise UnsafeArchiveError(
            f"archive member {name!r} climbs out of the archive with '..'; remove it"
        )


def is_ignored(name: str) -> bool:
    """Directories, hidden files and macOS resource forks carry no frames."""
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    return name.endswith("/") or any(p.startswith(".") or p == "__MACOSX" for p in parts)


def member_kind(name: str) -> Literal["image", "npy", "other"]:
    suffix = Path(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return "npy" if suffix == ".npy" else "other"


def check_ratio(size: int, compressed: int, what: str, limits: DecodeLimits) -> None:
    if size < RATIO_CHECK_MIN_BYTES:
        return
    ratio = size / max(compressed, 1)
    if ratio > limits.max_compression_ratio:
        raise UploadTooLargeError(
            f"{what} expands {ratio:.0f}:1 ({compressed} -> {size} bytes); the limit is "
            f"{limits.max_compression_ratio:.0f}:1 (possible archive bomb)"
        )
