"""From an uploaded file to the network's input: bounded reading, hashing, decoding off-loop.

Memory and CPU per process are bounded here (the ceiling is stated in ``service/README.md``):

- The multipart parser spools an upload to a temporary file; it is hashed from there in
  chunks, so a request waiting for its turn holds no more than a chunk of it in memory.
- At most ``max_concurrent_decodes`` uploads are read into memory and decoded at once
  (``ServiceState.decode_slots``); the others wait, inside their request's timeout.
- Decoding runs in a worker thread under ``gaitid.decode``'s limits (bytes, frames, pixels
  per frame and per walk, inflation), and stops at its next frame when the request is over:
  when the whole-request timeout fires or the client goes away, the awaiting task is
  cancelled, the thread is told through a ``threading.Event`` and the request answers
  without waiting for it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from functools import partial

import anyio
from fastapi import UploadFile

from gaitid.decode import DecodeLimits, decode_image, decode_upload, decode_upload_people
from gaitid.errors import DecodeCancelledError, UploadTooLargeError
from gaitid.preprocess import PreprocessedSequence
from gaitid.segment import (
    FrontEnd,
    InputChoice,
    People,
    PersonSegmenter,
    SegmentationObserver,
)
from gaitid.service.config import Settings
from gaitid.service.metrics import Metrics

_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class WalkChoice:
    """Whose walk a clip with several people gives: everyone's (``people="all"``), the
    ``track`` chosen, or the person with the most usable frames, unless ``one_person_only``
    (enrol and verify: a walk must belong to the identity named)."""

    people: People = "one"
    track: int | None = None
    one_person_only: bool = False


@dataclass(frozen=True)
class Upload:
    """One uploaded walk, still in the parser's spooled file, and what identifies it.

    ``input`` says how to read it (``auto`` tells silhouettes from camera footage),
    ``background`` is an optional empty-scene frame of the camera, for footage, and
    ``choice`` whose walk to take from a clip with several people.
    """

    file: UploadFile
    size: int
    sha256: str
    input: InputChoice = "auto"
    background: Upload | None = None
    choice: WalkChoice = WalkChoice()

    @property
    def filename(self) -> str | None:
        return self.file.filename

    async def read(self) -> bytes:
        """The whole upload (at most ``max_upload_bytes``); call it inside a decode slot."""
        await self.file.seek(0)
        return await self.file.read()


@dataclass(frozen=True)
class Decoded:
    """The decoded walk (with ``people="all"``: the person with the most usable frames) and,
    with ``people="all"``, every person's walk in order of first appearance."""

    sequence: PreprocessedSequence
    decode_ms: float
    everyone: tuple[PreprocessedSequence, ...] = ()


def decode_limits(settings: Settings) -> DecodeLimits:
    return DecodeLimits(
        max_bytes=settings.max_upload_bytes,
        max_frames=settings.max_frames,
        max_pixels_per_frame=settings.max_pixels_per_frame,
        max_total_pixels=settings.max_pixels_per_request,
        max_uncompressed_bytes=settings.max_uncompressed_bytes,
    )


async def read_upload(
    file: UploadFile,
    max_bytes: int,
    *,
    input_kind: InputChoice = "auto",
    background: UploadFile | None = None,
    choice: WalkChoice | None = None,
) -> Upload:
    """Hash the file part chunk by chunk, refusing (413) as soon as it passes ``max_bytes``."""
    digest = hashlib.sha256()
    size = 0
    await file.seek(0)
    while chunk := await file.read(_READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise UploadTooLargeError(
                f"upload is larger than the limit of {max_bytes} bytes (GAITID_MAX_UPLOAD_BYTES)"
            )
        digest.update(chunk)
    scene = None if background is None else await read_upload(background, max_bytes)
    if scene is not None and scene.size == 0:
        scene = None  # an empty part is what a form with a blank file input sends: no background
    return Upload(file, size, digest.hexdigest(), input_kind, scene, choice or WalkChoice())


async def decode(
    upload: Upload,
    settings: Settings,
    slots: anyio.CapacityLimiter,
    metrics: Metrics,
    segmenter: PersonSegmenter | None = None,
    observer: SegmentationObserver | None = None,
) -> Decoded:
    """Decode and preprocess in a worker thread, at most ``slots`` at once.

    Raises the ``gaitid.errors`` upload errors. When the calling task is cancelled, it
    returns at once and the thread stops at its next frame (``DecodeCancelledError`` there).
    ``observer`` sees the segmentation of footage (``/preview`` draws it).
    """
    queued = time.perf_counter()
    async with slots:
        metrics.decode_wait.observe(time.perf_counter() - queued)
        data = await upload.read()
        scene = None if upload.background is None else await upload.background.read()
        cancel = threading.Event()
        work = partial(
            _decode_in_thread,
            _Job(data, upload.filename, upload.input, scene, segmenter, upload.choice, observer),
            decode_limits(settings),
            settings.min_frames,
            cancel,
            metrics,
        )
        start = time.perf_counter()
        try:
            walks = await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        finally:
            cancel.set()  # a no-op once the thread is done; otherwise it stops the thread
    elapsed = (time.perf_counter() - start) * 1000.0
    if upload.choice.people == "one":
        return Decoded(walks[0], elapsed)
    # the person people=one would give: the most frames used, the earliest of equals
    main = max(walks, key=lambda walk: walk.used)
    return Decoded(main, elapsed, tuple(walks))


@dataclass(frozen=True)
class _Job:
    """What one decode reads: the upload's bytes and how to read them."""

    data: bytes
    filename: str | None
    input: InputChoice
    background: bytes | None
    segmenter: PersonSegmenter | None
    choice: WalkChoice = WalkChoice()
    observer: SegmentationObserver | None = None

    def front_end(self, limits: DecodeLimits) -> FrontEnd:
        scene = (
            None
            if self.background is None
            else decode_image(self.background, "the background (empty-scene frame)", limits)
        )
        return FrontEnd(
            input=self.input,
            background=scene,
            segmenter=self.segmenter,
            observer=self.observer,
            track=self.choice.track,
            one_person_only=self.choice.one_person_only,
        )


def _decode_in_thread(
    job: _Job,
    limits: DecodeLimits,
    min_frames: int,
    cancel: threading.Event,
    metrics: Metrics,
) -> list[PreprocessedSequence]:
    """The walk (or, with ``people="all"``, everyone's) of one upload."""
    metrics.decodes_running.inc()
    decoder = decode_upload_people if job.choice.people == "all" else decode_upload
    try:
        walks = decoder(
            job.data,
            job.filename,
            limits=limits,
            min_frames=min_frames,
            cancel=cancel,
            front_end=job.front_end(limits),
        )
        return walks if isinstance(walks, list) else [walks]
    except DecodeCancelledError:
        metrics.decodes_cancelled.inc()
        raise
    finally:
        metrics.decodes_running.dec()
