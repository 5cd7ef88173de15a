"""One uploaded walk to its embedding: decode off the event loop, embed through the
micro-batcher, and record both in the metrics. Enroll, identify and verify all start here.

A walk longer than ``max_embed_frames`` is embedded in chunks (batched together when they
fit) whose embeddings are merged (``gaitid.contract``), which bounds inference memory."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from gaitid.contract import merge_embeddings, split_walk
from gaitid.preprocess import ClipPerson, PreprocessedSequence
from gaitid.service.schemas import Box, InputReport, Timings, TrackInfo
from gaitid.service.state import ServiceState
from gaitid.service.walks.batching import EmbedResult
from gaitid.service.walks.uploads import Decoded, Upload, decode


def input_report(sequence: PreprocessedSequence) -> InputReport:
    """How an upload was read (kind, frames seen, used and dropped by reason; for footage,
    whose walk it is and everyone followed in the clip), for answers."""
    return InputReport(
        kind=sequence.kind,
        frames_seen=sequence.total,
        frames_used=sequence.used,
        frames_dropped=sequence.dropped,
        dropped=dict(sequence.drops),
        people=max(1, len(sequence.people)),
        track=None if sequence.person is None else track_info(sequence.person),
        tracks=[track_info(person) for person in sequence.people],
    )


def track_info(person: ClipPerson) -> TrackInfo:
    """A person of a clip, for answers."""
    x, y, w, h = person.box
    return TrackInfo(
        track=person.track,
        first_frame=person.first_frame,
        last_frame=person.last_frame,
        box=Box(x=x, y=y, w=w, h=h),
    )


@dataclass(frozen=True)
class EmbeddedWalk:
    """The upload's walk and its embedding; with ``people="all"``, ``everyone``'s too (the
    walk itself among them)."""

    decoded: Decoded
    embedded: EmbedResult
    everyone: tuple[tuple[PreprocessedSequence, EmbedResult], ...] = ()

    def input_report(self) -> InputReport:
        """How the upload was read, for the response."""
        return input_report(self.decoded.sequence)

    def timings(self, *, total_ms: float, search_ms: float | None = None) -> Timings:
        """The response's timing block for this walk."""
        return Timings(
            decode_ms=self.decoded.decode_ms,
            queue_ms=self.embedded.queue_ms,
            inference_ms=self.embedded.inference_ms,
            batch_size=self.embedded.batch_size,
            search_ms=search_ms,
            total_ms=total_ms,
        )


async def embed_upload(upload: Upload, state: ServiceState) -> EmbeddedWalk:
    """Decode and embed ``upload`` (with ``people="all"``, every person's walk, embedded
    together); raises the ``gaitid.errors`` upload errors (4xx)."""
    decoded = await decode(
        upload, state.settings, state.decode_slots, state.metrics, state.segmenter
    )
    state.metrics.decode.observe(decoded.decode_ms / 1000.0)
    if not decoded.everyone:
        return EmbeddedWalk(decoded, await _embed(decoded.sequence, state))
    embedded = await asyncio.gather(*(_embed(walk, state) for walk in decoded.everyone))
    everyone = tuple(zip(decoded.everyone, embedded, strict=True))
    main = next(result for walk, result in everyone if walk is decoded.sequence)
    return EmbeddedWalk(decoded, main, everyone)


async def _embed(sequence: PreprocessedSequence, state: ServiceState) -> EmbedResult:
    """One walk's embedding, in chunks of at most ``max_embed_frames`` merged into one."""
    chunks = split_walk(sequence.frames, state.settings.max_embed_frames)
    parts = await asyncio.gather(*(state.batcher.embed(chunk) for chunk in chunks))
    for part in parts:
        state.metrics.observe_embedding(part.inference_ms, part.queue_ms, part.batch_size)
    return EmbedResult(
        vector=merge_embeddings(np.stack([part.vector for part in parts])),
        inference_ms=sum(part.inference_ms for part in parts),
        queue_ms=max(part.queue_ms for part in parts),
        batch_size=max(part.batch_size for part in parts),
    )
