"""From an uploaded file to the network's input: bounded reading, hashing, decoding off-loop.

Decoding (archives, images, video) is CPU work, so it runs in a worker thread and the event
loop keeps serving. Limits come from the settings; ``gaitid.decode`` raises the typed
``UploadError`` family that ``service.errors`` maps to 413/422.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import anyio
from fastapi import UploadFile

from gaitid.decode import DecodeLimits, decode_upload
from gaitid.errors import UploadTooLargeError
from gaitid.preprocess import PreprocessedSequence
from service.config import Settings

_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class Upload:
    """The bytes of one uploaded walk and what identifies them."""

    data: bytes
    filename: str | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Decoded:
    sequence: PreprocessedSequence
    decode_ms: float


def decode_limits(settings: Settings) -> DecodeLimits:
    return DecodeLimits(
        max_bytes=settings.max_upload_bytes,
        max_frames=settings.max_frames,
        max_pixels_per_frame=settings.max_pixels_per_frame,
        max_uncompressed_bytes=settings.max_uncompressed_bytes,
    )


async def read_upload(file: UploadFile, max_bytes: int) -> Upload:
    """Read the file part, refusing (413) as soon as it passes ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await file.read(_READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise UploadTooLargeError(
                f"upload is larger than the limit of {max_bytes} bytes (GAITID_MAX_UPLOAD_BYTES)"
            )
        chunks.append(chunk)
    return Upload(b"".join(chunks), file.filename)


async def decode(upload: Upload, settings: Settings) -> Decoded:
    """Decode and preprocess in a worker thread; raises ``gaitid.errors`` upload errors."""
    limits = decode_limits(settings)
    start = time.perf_counter()
    sequence = await anyio.to_thread.run_sync(
        lambda: decode_upload(
            upload.data, upload.filename, limits=limits, min_frames=settings.min_frames
        )
    )
    return Decoded(sequence, (time.perf_counter() - start) * 1000.0)
