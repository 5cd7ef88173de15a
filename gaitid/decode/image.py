"""PNG / JPEG / BMP: one image as a one-frame walk, the frames of archives and folders, and
an empty-scene background frame."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from gaitid.decode.archive import is_ignored, member_kind
from gaitid.decode.work import Source, Work, natural_key, reading
from gaitid.errors import UploadContentError, UploadTooLargeError
from gaitid.preprocess import FrameKey


def open_upload(data: bytes, work: Work) -> Source:
    """A single image: a walk of one frame."""
    return Source(iter([(0, decode_image(data, "the image", work))]))


def decode_image(raw: bytes, what: str, work: Work) -> NDArray:
    """PNG / JPEG / BMP bytes -> array; the size in the header is checked before decoding."""
    failure = f"{what} is not a readable PNG/JPEG/BMP image"
    try:
        with reading(failure):
            image = Image.open(io.BytesIO(raw), formats=("PNG", "JPEG", "BMP"))
        with image:
            width, height = image.size
            work.check_frame(height, width, what)
            work.check_total(work.pixels + height * width, "the upload")
            with reading(failure):
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


def frame_files(folder: Path) -> list[Path]:
    """The PNG / JPEG / BMP files of a folder in the natural order of their names (hidden
    files and files of other types skipped): the frames of a walk folder."""
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not is_ignored(p.name) and member_kind(p.name) == "image"
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def folder_frames(folder: Path, work: Work) -> Iterator[tuple[FrameKey, NDArray]]:
    """The frames of a folder (``frame_files``), decoded one by one under the limits."""
    limits = work.limits
    files = frame_files(folder)
    if not files:
        raise UploadContentError(f"{folder} has no PNG/JPEG/BMP frames")
    if len(files) > limits.max_frames:
        raise UploadTooLargeError(
            f"{folder} has {len(files)} frames; the limit is {limits.max_frames}"
        )
    for index, path in enumerate(files):
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise UploadTooLargeError(f"{path} is {size} bytes; the limit is {limits.max_bytes}")
        yield index, decode_image(path.read_bytes(), str(path), work)
