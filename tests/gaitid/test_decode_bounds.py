"""Decoding stays bounded while it runs: memory, inflation, pixels, and a cancel signal.

Each limit is tested on the upload that defeated the previous decoder (issue 14): a tiny
compressed tar that inflates to hundreds of MiB, an ``.npz`` whose array is far larger than
the upload, thousands of large frames inside every byte limit, and a request that is over
while its frames are still being decoded.
"""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from gaitid.decode import DecodeLimits, decode_upload
from gaitid.errors import (
    CorruptUploadError,
    DecodeCancelledError,
    TooFewFramesError,
    UploadContentError,
    UploadTooLargeError,
)
from tests.utils import uploads

MiB = 1 << 20
#: What one decode may allocate beyond the upload's own bytes in these tests: a few raw
#: frames of at most 256x256 and their float copies, plus decoder buffers.
DECODE_OVERHEAD = 12 * MiB


@contextmanager
def peak_allocation() -> Iterator[Callable[[], int]]:
    """Peak bytes allocated (Python objects and numpy buffers) inside the block."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    peak = 0
    try:
        yield lambda: peak
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def _big_walk(frames: int, size: int) -> np.ndarray:
    """``frames`` 0/255 frames of ``size x size`` with a person-like block (uint8)."""
    walk = np.zeros((frames, size, size), np.uint8)
    walk[:, size // 8 : size - size // 8, size // 3 : size // 2] = 255
    return walk


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_compressed_tar_bomb_is_refused_while_inflating(compression: str) -> None:
    bomb = uploads.tar_bomb(48 * MiB, compression)
    assert len(bomb) < 64 * 1024  # a small upload ...
    with peak_allocation() as peak, pytest.raises(UploadTooLargeError, match="expands"):
        decode_upload(bomb, "walk.tar")
    assert peak() < DECODE_OVERHEAD  # ... refused long before its 48 MiB exist in memory


def test_tar_member_announcing_more_than_an_upload_is_refused_from_its_header() -> None:
    bomb = uploads.tar_bomb(0, "bz2", declared=300 * MiB)
    with pytest.raises(UploadTooLargeError, match="one frame file may be at most"):
        decode_upload(bomb, "walk.tar.bz2")


def test_tar_members_together_may_not_pass_the_uncompressed_limit() -> None:
    frames = _big_walk(8, 256)
    data = uploads.encode_tar(frames, "BMP", "gz")  # 8 x 64 KiB of BMP
    limits = DecodeLimits(max_uncompressed_bytes=256 * 1024, max_compression_ratio=10**6)
    with pytest.raises(UploadTooLargeError, match="inflates past 262144 bytes"):
        decode_upload(data, "walk.tar.gz", limits=limits)


def test_npz_is_streamed_frame_by_frame() -> None:
    walk = _big_walk(300, 256)  # 19.7 MB of raw frames in a ~50 kB upload
    data = uploads.encode_npz(walk)
    expected = decode_upload(uploads.encode_npy(walk)).frames
    with peak_allocation() as peak:
        result = decode_upload(data, "walk.npz")
    assert np.array_equal(result.frames, expected)
    assert peak() < DECODE_OVERHEAD


def test_npy_is_read_in_place() -> None:
    walk = _big_walk(300, 256)
    data = uploads.encode_npy(walk)
    with peak_allocation() as peak:
        result = decode_upload(data, "walk.npy")
    assert result.used == 300
    assert peak() < DECODE_OVERHEAD  # not a second copy of the 19.7 MB array


def test_npz_value_scale_is_decided_for_the_whole_array() -> None:
    """A 0/1 frame inside a 0..255 walk stays nearly empty (as for an in-memory array)."""
    walk = _big_walk(4, 128)
    walk[2] = (walk[2] > 0).astype(np.uint8)  # values 0/1 only
    streamed = decode_upload(uploads.encode_npz(walk), "walk.npz")
    in_memory = decode_upload(uploads.encode_npy(walk), "walk.npy")
    assert (streamed.used, streamed.dropped) == (in_memory.used, in_memory.dropped) == (3, 1)
    assert np.array_equal(streamed.frames, in_memory.frames)


def test_fortran_ordered_arrays() -> None:
    walk = np.asfortranarray(_big_walk(3, 96))
    assert np.array_equal(
        decode_upload(uploads.encode_npy(walk)).frames,
        decode_upload(uploads.encode_npy(np.ascontiguousarray(walk))).frames,
    )
    with pytest.raises(UploadContentError, match="Fortran order"):
        decode_upload(uploads.encode_npz(walk), "walk.npz")


def test_npz_whose_data_is_shorter_or_longer_than_its_header() -> None:
    good = uploads.encode_npy(_big_walk(3, 64))

    def npz_of(raw: bytes) -> bytes:
        return uploads.zip_with_members({"arr_0.npy": raw})

    with pytest.raises(CorruptUploadError, match="data ends in frame 2"):
        decode_upload(npz_of(good[:-100]), "walk.npz")
    with pytest.raises(CorruptUploadError, match="more data than its shape"):
        decode_upload(npz_of(good + b"\0"), "walk.npz")


def test_the_pixel_budget_stops_many_large_frames() -> None:
    frames = _big_walk(40, 400)
    limits = DecodeLimits(max_total_pixels=2_000_000)  # 12 frames of 400x400
    with pytest.raises(UploadTooLargeError, match="pixels per walk"):
        decode_upload(uploads.encode_zip(frames), "walk.zip", limits=limits)
    with pytest.raises(UploadTooLargeError, match="pixels per walk"):
        decode_upload(uploads.encode_npy(frames), "walk.npy", limits=limits)
    small = decode_upload(uploads.encode_zip(frames[:12]), "walk.zip", limits=limits)
    assert small.used == 12


def test_an_npy_header_over_the_pixel_budget_is_refused_before_its_data() -> None:
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (900, 1080, 1920), }"
    with pytest.raises(UploadTooLargeError, match="pixels in all"):
        decode_upload(uploads.npy_with_header(header), "walk.npy")


class CancelAfter(threading.Event):
    """An event that reads as set from its ``checks``-th look on: a request that ends while
    its upload is being decoded, without timing."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.looks = 0
        self.checks = checks

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks >= self.checks


ENCODERS: dict[str, Callable[[np.ndarray], bytes]] = {
    "zip": uploads.encode_zip,
    "tar.gz": lambda f: uploads.encode_tar(f, "PNG", "gz"),
    "npy": uploads.encode_npy,
    "npz": uploads.encode_npz,
    "tiff": uploads.encode_tiff,
    "video": lambda f: uploads.encode_video(f, "avi"),
}


@pytest.mark.parametrize("fmt", sorted(ENCODERS))
def test_decoding_stops_soon_after_the_request_is_over(fmt: str) -> None:
    walk = uploads.walking_masks(30, 120, 90)
    data = ENCODERS[fmt](walk)
    cancel = CancelAfter(checks=5)
    with pytest.raises(DecodeCancelledError):
        decode_upload(data, f"walk.{fmt}", cancel=cancel)
    assert cancel.looks == 5  # stopped at the first look after it was set: no more frames
    assert decode_upload(data, f"walk.{fmt}", cancel=threading.Event()).used == 30


def test_an_unset_cancel_event_changes_nothing() -> None:
    walk = uploads.walking_masks(5, 120, 90)
    with pytest.raises(TooFewFramesError):
        decode_upload(uploads.encode_zip(walk), min_frames=6, cancel=threading.Event())


def test_a_zip_member_may_not_inflate_past_the_upload_limit() -> None:
    data = uploads.zip_with_members({"frame0.png": bytes(3 * MiB)})
    limits = DecodeLimits(max_bytes=2 * MiB, max_compression_ratio=10**6)
    with pytest.raises(UploadTooLargeError, match="one frame file may be at most"):
        decode_upload(data, "walk.zip", limits=limits)
