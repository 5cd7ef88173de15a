"""One uploaded walk to its embedding: decode off the event loop, embed through the
micro-batcher, and record both in the metrics. Enroll, identify and verify all start here."""

from __future__ import annotations

from dataclasses import dataclass

from service.batching import EmbedResult
from service.schemas import Timings
from service.state import ServiceState
from service.uploads import Decoded, Upload, decode


@dataclass(frozen=True)
class EmbeddedWalk:
    decoded: Decoded
    embedded: EmbedResult

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
    decoded = await decode(upload, state.settings, state.decode_slots, state.metrics)
    state.metrics.decode.observe(decoded.decode_ms / 1000.0)
    embedded = await state.batcher.embed(decoded.sequence.frames)
    state.metrics.observe_embedding(embedded.inference_ms, embedded.queue_ms, embedded.batch_size)
    return EmbeddedWalk(decoded, embedded)
