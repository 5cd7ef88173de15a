""".npy: one ``(T, H, W)`` or ``(T, H, W, C)`` array of bool / integers / floats.

The header is checked against the limits before any data is touched (dtype, shape, frames,
pixels), and the array is never unpickled: an in-memory upload is read in place, its frames
views of the upload's own bytes; an .npz member (``gaitid.decode.zip``) is read frame by
frame from its stream with the same header reader.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gaitid.decode.work import CHUNK, Reader, Source, Work, reading
from gaitid.errors import (
    CorruptUploadError,
    InvalidSequenceError,
    UploadContentError,
    UploadTooLargeError,
)
from gaitid.preprocess import value_scale


@dataclass(frozen=True)
class NpyHeader:
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


def read_header(handle: Reader, what: str, work: Work) -> NpyHeader:
    """Parse and check an .npy header (dtype, shape, sizes, pixel budget) before any data."""
    failure = f"{what} has an unreadable .npy header"
    with reading(failure):
        major, _minor = np.lib.format.read_magic(handle)
    if major not in (1, 2, 3):
        raise CorruptUploadError(f"{failure}: unknown .npy version {major}")
    with reading(failure):
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
    return NpyHeader(tuple(shape), bool(fortran), dtype)


def open_upload(raw: bytes, work: Work) -> Source:
    """An in-memory .npy, read in place: the frames are views of the upload's own bytes."""
    what = "the .npy upload"
    handle = io.BytesIO(raw)
    header = read_header(handle, what, work)
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
    return Source(enumerate(array), array_scale(array))


def array_scale(values: NDArray) -> float:
    try:
        return value_scale(values)
    except InvalidSequenceError as exc:
        raise UploadContentError(str(exc)) from exc


def npy_frames(stream: Reader, header: NpyHeader, what: str) -> Iterator[NDArray]:
    for index in range(header.shape[0]):
        raw = read_exact(stream, header.frame_bytes)
        if len(raw) != header.frame_bytes:
            raise CorruptUploadError(
                f"{what} declares shape {header.shape} of {header.dtype} ({header.data_bytes} "
                f"bytes) but its data ends in frame {index}"
            )
        yield np.frombuffer(raw, dtype=header.dtype).reshape(header.frame_shape)


def read_exact(stream: Reader, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = stream.read(min(left, CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
