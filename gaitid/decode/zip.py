"""zip: of PNG / JPEG / BMP frames, or an .npz (a zip of .npy members).

Image frames are ordered by the natural sort of member names (``f2.png`` before
``f10.png``); directories, hidden members and ``__MACOSX`` are skipped. An .npz holds a
single array, or the one stored under ``NPZ_KEY`` (``"silhouettes"``) when there are
several; its member is streamed twice (value range, then frames), never inflated whole.
Sizes the central directory declares (members, uncompressed bytes, ratios of large members)
are checked before anything is inflated, and bytes actually inflated are charged as they
come.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Final

from numpy.typing import NDArray

from gaitid.decode.archive import check_member_name, check_ratio, is_ignored, member_kind
from gaitid.decode.image import decode_image
from gaitid.decode.npy import NpyHeader, array_scale, npy_frames, read_header
from gaitid.decode.work import CHUNK, Source, Work, natural_key, reading
from gaitid.errors import (
    CorruptUploadError,
    UnsafeArchiveError,
    UploadContentError,
    UploadTooLargeError,
)
from gaitid.preprocess import FrameKey

#: Key of the silhouette array in an npz that holds more than one array.
NPZ_KEY: Final = "silhouettes"


def open_upload(data: bytes, work: Work) -> Source:
    """A zip of image frames, or an .npz (a zip of .npy members)."""
    limits = work.limits
    with reading("the zip archive cannot be read"):
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    if len(members) > limits.max_archive_members:
        raise UploadTooLargeError(
            f"the zip archive has {len(members)} members; the limit is {limits.max_archive_members}"
        )
    declared = 0
    for info in members:
        check_member_name(info.filename)
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise UnsafeArchiveError(f"zip member {info.filename!r} is a symbolic link")
        check_ratio(info.file_size, info.compress_size, f"zip member {info.filename!r}", limits)
        declared += info.file_size
    if declared > limits.max_uncompressed_bytes:
        raise UploadTooLargeError(
            f"the zip archive declares {declared} uncompressed bytes; the limit is "
            f"{limits.max_uncompressed_bytes}"
        )
    usable = [i for i in members if not i.is_dir() and not is_ignored(i.filename)]
    arrays = [i for i in usable if member_kind(i.filename) == "npy"]
    images = [i for i in usable if member_kind(i.filename) == "image"]
    if arrays and images:
        raise UploadContentError(
            "the zip archive mixes .npy arrays and image frames; send either an .npz or a "
            "zip of PNG/JPEG/BMP frames"
        )
    if arrays:
        return open_npz(archive, arrays, work)
    if not images:
        found = sorted(i.filename for i in usable)[:5]
        raise UploadContentError(
            f"the zip archive has no PNG/JPEG/BMP frames (found {found or 'nothing'})"
        )
    for info in images:
        work.check_frame_file(info.file_size, f"zip member {info.filename!r}")
    images.sort(key=lambda i: natural_key(i.filename))
    return Source(_zip_image_frames(archive, images, work))


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, work: Work) -> bytes:
    """Inflate one image member in chunks, charging the bytes actually produced to ``work``."""
    chunks: list[bytes] = []
    size = 0
    with _ZipMemberStream(archive, info, work, charge=True) as member:
        while chunk := member.read(CHUNK):
            size += len(chunk)
            work.check_frame_file(size, f"zip member {info.filename!r}")
            chunks.append(chunk)
    return b"".join(chunks)


def _zip_image_frames(
    archive: zipfile.ZipFile, images: list[zipfile.ZipInfo], work: Work
) -> Iterator[tuple[FrameKey, NDArray]]:
    with archive:
        for index, info in enumerate(images):
            raw = _read_zip_member(archive, info, work)
            yield index, decode_image(raw, f"zip member {info.filename!r}", work)


def open_npz(archive: zipfile.ZipFile, arrays: list[zipfile.ZipInfo], work: Work) -> Source:
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
            header = read_header(stream, what, work)
            if header.fortran:
                raise UploadContentError(
                    f"{what} is stored in Fortran order, which cannot be read frame by frame; "
                    "save it C-ordered (np.ascontiguousarray)"
                )
            scale = 255.0
            for frame in npy_frames(stream, header, what):
                scale = min(scale, array_scale(frame))
            if stream.read(1):
                raise CorruptUploadError(
                    f"{what} carries more data than its shape {header.shape} declares"
                )
    except BaseException:
        archive.close()
        raise
    return Source(_npz_frames(archive, info, header, what, work), scale)


def _npz_frames(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    header: NpyHeader,
    what: str,
    work: Work,
) -> Iterator[tuple[FrameKey, NDArray]]:
    """Second pass over an npz member (already charged and checked by the first)."""
    with archive, _ZipMemberStream(archive, info, work, charge=False) as stream:
        read_header(stream, what, work)
        yield from enumerate(npy_frames(stream, header, what))


class _ZipMemberStream:
    """A zip member read in chunks: inflated bytes charged to the work (``charge``), the
    cancel event checked between chunks, and zip errors reported as a corrupt upload."""

    def __init__(
        self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, work: Work, *, charge: bool
    ) -> None:
        self._what = f"zip member {info.filename!r}"
        self._work = work
        self._charge = charge
        with reading(f"{self._what} cannot be read"):
            self._member = archive.open(info)

    def read(self, size: int = -1) -> bytes:
        self._work.check_cancel()
        with reading(f"{self._what} cannot be read"):
            chunk = self._member.read(CHUNK if size < 0 else min(size, CHUNK))
        if self._charge:
            self._work.inflate(len(chunk), self._what)
        return chunk

    def __enter__(self) -> _ZipMemberStream:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._member.close()
