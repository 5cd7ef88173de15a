"""One uploaded walk to its embedding: decode off the event loop, embed through the
micro-batcher, and record both in the metrics. Enroll, identify and verify all start here.

A walk longer than ``max_embed_frames`` is embedded in chunks (batched together when they
fit) whose embeddings are merged (``gaitid.contract``), which bounds inference memory."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from gaitid.contract import merge_embeddings, split_walk
from gaitid.preprocess import PreprocessedSequence
from gaitid.service.schemas import InputReport, Timings
from gaitid.service.state import ServiceState
from gaitid.service.walks.batching import EmbedResult
from gaitid.service.walks.uploads import Decoded, Upload, decode


def input_report(sequence: PreprocessedSequence) -> InputReport:
    """How an upload was read (kind, frames seen, used and dropped by reason), for answers."""
    return InputReport(
        kind=sequence.kind,
        frames_seen=sequence.total,
        frames_used=sequence.used,
        frames_dropped=sequence.dropped,
        dropped=dict(sequence.drops),
    )


@dataclass(frozen=True)
class EmbeddedWalk:
    decoded: Decoded
    embedded: EmbedResult

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
    """Decode and embed ``upload``; raises the ``gaitid.errors`` upload errors (4xx)."""
    decoded = await decode(
        upload, state.settings, state.decode_slots, state.metrics, state.segmenter
    )
    state.metrics.decode.observe(decoded.decode_ms / 1000.0)
    chunks = split_walk(decoded.sequence.frames, state.settings.max_embed_frames)
    parts = await asyncio.gather(*(state.batcher.embed(chunk) for chunk in chunks))
    for part in parts:
        state.metrics.observe_embedding(part.inference_ms, part.queue_ms, part.batch_size)
    embedded = EmbedResult(
        vector=merge_embeddings(np.stack([part.vector for part in parts])),
        inference_ms=sum(part.inference_ms for part in parts),
        queue_ms=max(part.queue_ms for part in parts),
        batch_size=max(part.batch_size for part in parts),
    )
    return EmbeddedWalk(decoded, embedded)
