"""Multi-page TIFF: one frame per page (uncompressed or deflate), each page's size checked
before it is decoded. tifffile is imported when a TIFF arrives."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Final

import numpy as np
from numpy.typing import NDArray

from gaitid.decode.work import Source, Work, reading
from gaitid.errors import CorruptUploadError, UploadTooLargeError
from gaitid.preprocess import FrameKey

#: tifffile's tag parser also fails with these on malformed tags (found by fuzzing).
_FAILURES: Final = (TypeError, KeyError, IndexError)


def open_upload(data: bytes, work: Work) -> Source:
    """One frame per TIFF page, with each page's size checked before it is decoded."""
    import tifffile

    with reading("the TIFF cannot be read", _FAILURES):
        tiff = tifffile.TiffFile(io.BytesIO(data))
    return Source(_tiff_pages(tiff, work))


def _tiff_pages(tiff: object, work: Work) -> Iterator[tuple[FrameKey, NDArray]]:
    import tifffile

    assert isinstance(tiff, tifffile.TiffFile)
    limits = work.limits
    with tiff:
        pages = iter(tiff.pages)
        decoded = 0
        while True:
            failure = f"TIFF page {decoded} cannot be decoded"
            with reading(failure, _FAILURES):
                entry = next(pages, None)
            if entry is None:
                break
            if decoded >= limits.max_frames:
                raise UploadTooLargeError(
                    f"the TIFF has more than {limits.max_frames} pages (the limit)"
                )
            with reading(failure, _FAILURES):
                page = entry if isinstance(entry, tifffile.TiffPage) else entry.aspage()
                # int(): a malformed tag can hand back a tuple where a number belongs
                height, width = int(page.imagelength), int(page.imagewidth)
                nbytes = int(page.nbytes)
            work.check_frame(height, width, f"TIFF page {decoded}")
            work.inflate(nbytes, f"TIFF page {decoded}")
            with reading(failure, _FAILURES):
                array = page.asarray()
            if page.axes.startswith("S") and array.ndim == 3:
                array = np.moveaxis(array, 0, -1)  # planar [C, H, W] -> [H, W, C]
            yield decoded, array
            decoded += 1
        if decoded == 0:
            raise CorruptUploadError("the TIFF has no readable pages")
