"""tar (plain, .gz, .bz2, .xz) of PNG / JPEG / BMP frames, streamed member by member.

Frames are ordered by the natural sort of member names (``f2.png`` before ``f10.png``);
directories, hidden members (any path part starting with ``.``) and ``__MACOSX`` are
skipped, members of other types too. Inflation is streamed with a running cap: bytes
produced count against ``max_uncompressed_bytes`` and a compressed stream is refused as
soon as its running ratio passes ``max_compression_ratio``; links, devices and names that
climb out of the archive are refused.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zlib
from collections.abc import Iterator

from numpy.typing import NDArray

from gaitid.decode.archive import check_member_name, check_ratio, is_ignored, member_kind
from gaitid.decode.image import decode_image
from gaitid.decode.work import CHUNK, Source, Work, natural_key, reading
from gaitid.errors import (
    CorruptUploadError,
    UnsafeArchiveError,
    UploadContentError,
    UploadTooLargeError,
)
from gaitid.preprocess import FrameKey


class _TarStream:
    """The file object ``tarfile`` streams from: inflates on demand, charging every byte.

    Bytes produced count against the uncompressed limit and the running ratio of a
    compressed stream is checked as it grows, so a bomb is refused after about a megabyte
    of output instead of after inflating it whole.
    """

    def __init__(self, data: bytes, work: Work) -> None:
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
        wanted = CHUNK if size < 0 else min(size, CHUNK)
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
            check_ratio(self._produced, consumed, "the compressed archive", self._work.limits)
        return chunk

    def close(self) -> None:
        self._stream.close()


def open_upload(data: bytes, work: Work) -> Source:
    """A tar, plain or compressed, of image frames, streamed member by member."""
    stream = _TarStream(data, work)
    with reading("the tar archive cannot be read"):
        # "r|": a forward-only stream; members are read as they come, never all at once
        archive = tarfile.open(fileobj=stream, mode="r|")  # type: ignore[call-overload]  # noqa: SIM115
    return Source(_tar_image_frames(archive, stream, work))


def _tar_image_frames(
    archive: tarfile.TarFile, stream: _TarStream, work: Work
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
                check_member_name(member.name)
                if member.issym() or member.islnk():
                    raise UnsafeArchiveError(
                        f"tar member {member.name!r} is a link to {member.linkname!r}; "
                        "send regular files only"
                    )
                if member.isdir() or is_ignored(member.name):
                    continue
                if not member.isfile():
                    raise UnsafeArchiveError(
                        f"tar member {member.name!r} is a device or fifo; send regular files only"
                    )
                if len(usable) < 5:
                    usable.append(member.name)
                if member_kind(member.name) != "image":
                    continue
                what = f"tar member {member.name!r}"
                work.check_frame_file(member.size, what)
                with reading("the tar archive cannot be read"):
                    handle = archive.extractfile(member)
                    assert handle is not None  # regular files always have a handle
                    content = handle.read()
                frames += 1
                yield natural_key(member.name), decode_image(content, what, work)
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
        with reading("the tar archive cannot be read"):
            member = next(members, None)
        if member is None:
            return
        yield member
