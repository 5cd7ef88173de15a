"""Micro-batching: concurrent embed requests share one ONNX Runtime run.

On a GPU a run on a batch of eight walks costs little more than a run on one, so under load the
service gathers waiting requests into one batch. (On a CPU the gain is small, the 3D
convolutions being compute-bound, and padding can cancel it: see BENCHMARKS.md, "End-to-end
throughput and latency".)
The collector task takes the first waiting request, then waits at most ``max_wait_ms`` for
more, up to ``max_batch`` requests, and hands the batch to a worker thread so the event loop
keeps serving while the model runs. While one batch runs, the next
requests queue up, so batches grow with load on their own and an idle service pays at most
``max_wait_ms`` of extra latency.

Padding cost: walks are zero-padded to the longest in the batch, so one long walk makes every
short one in its batch cost as much as itself. Each batch therefore starts with the oldest
waiting request (so none starves) and fills up with the waiting requests closest to it in
length; and it is capped at ``max_frames_per_batch`` padded frames (``len(batch) * longest``):
requests that do not fit wait for a later batch, and a walk longer than the cap runs alone.

``workers`` ONNX Runtime runs may be in flight at once (default 1: ORT already spreads one run
over the cores, and a second concurrent run would only contend for them). With
``enabled=False`` every request is run alone through the same workers, which is the baseline
the benchmark compares against.

Each request is checked before it is queued, so a malformed walk fails only its own caller;
an error from the run itself fails every caller of that batch. ``stop`` fails the requests
still queued with :class:`BatcherClosedError` and lets the batches already running finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from gaitid.errors import GaitidError
from gaitid.service.walks.inference import check_sequence

logger = logging.getLogger(__name__)


class BatcherClosedError(GaitidError):
    """The batcher is not running (not started yet, or stopped); the request was not run."""


class SupportsEmbedBatch(Protocol):
    """What the batcher needs from :class:`service.walks.inference.Embedder`."""

    def embed_batch(self, sequences: list[NDArray[np.uint8]]) -> NDArray[np.float32]: ...


@dataclass(frozen=True)
class EmbedResult:
    """One request's embedding and where its time went."""

    vector: NDArray[np.float32]  # (256,), unit norm
    inference_ms: float  # wall time of the ONNX run it was part of
    queue_ms: float  # from arrival to the start of that run
    batch_size: int  # how many walks shared the run


@dataclass
class _Request:
    sequence: NDArray[np.uint8]
    future: asyncio.Future[EmbedResult]
    arrived: float = field(default_factory=time.perf_counter)

    @property
    def frames(self) -> int:
        return int(self.sequence.shape[0])


class MicroBatcher:
    """Groups concurrent :meth:`embed` calls into batched runs on a worker thread."""

    def __init__(
        self,
        embedder: SupportsEmbedBatch,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 5.0,
        max_frames_per_batch: int = 1024,
        enabled: bool = True,
        workers: int = 1,
    ) -> None:
        for name, value in (
            ("max_batch", max_batch),
            ("max_frames_per_batch", max_frames_per_batch),
            ("workers", workers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if not isinstance(max_wait_ms, int | float) or not 0 <= max_wait_ms <= 1000:
            raise ValueError(f"max_wait_ms must be between 0 and 1000; got {max_wait_ms!r}")
        self._embedder = embedder
        self.max_batch = max_batch
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self.max_frames_per_batch = max_frames_per_batch
        self.enabled = enabled
        self.workers = workers
        self._pending: deque[_Request] = deque()
        self._arrival = asyncio.Event()
        self._slots: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._collector: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._open = False

    @property
    def running(self) -> bool:
        return self._open

    async def start(self) -> None:
        """Start the worker threads and (when enabled) the collector task."""
        if self._open:
            return
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="gaitid-embed")
        self._slots = asyncio.Semaphore(self.workers)
        self._arrival = asyncio.Event()
        self._open = True
        if self.enabled:
            self._collector = asyncio.create_task(self._collect(), name="gaitid-batch-collector")

    async def stop(self) -> None:
        """Fail queued requests, wait for running batches, release the worker threads."""
        if not self._open:
            return
        self._open = False
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
            self._collector = None
        while self._pending:
            request = self._pending.popleft()
            if not request.future.done():
                request.future.set_exception(
                    BatcherClosedError("the embedding batcher stopped before this request ran")
                )
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        if self._executor is not None:
            executor, self._executor = self._executor, None
            # runs already submitted (also unbatched ones) finish; wait for them off the loop
            await asyncio.to_thread(executor.shutdown, wait=True)

    async def embed(self, sequence: NDArray[np.uint8]) -> EmbedResult:
        """Embed one uint8 ``(T, 64, 44)`` walk, batched with whatever else is waiting."""
        if not self._open:
            raise BatcherClosedError("the embedding batcher is not running (start() it first)")
        check_sequence(sequence)
        if not self.enabled:
            return await self._embed_alone(sequence)
        request = _Request(sequence, asyncio.get_running_loop().create_future())
        self._pending.append(request)
        self._arrival.set()
        return await request.future

    async def _embed_alone(self, sequence: NDArray[np.uint8]) -> EmbedResult:
        arrived = time.perf_counter()
        assert self._slots is not None
        async with self._slots:
            if not self._open or self._executor is None:
                raise BatcherClosedError("the embedding batcher stopped before this request ran")
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            vectors, inference_ms = await loop.run_in_executor(
                self._executor, self._run_batch, [sequence]
            )
        return EmbedResult(vectors[0], inference_ms, (started - arrived) * 1000.0, 1)

    def _run_batch(self, sequences: list[NDArray[np.uint8]]) -> tuple[NDArray[np.float32], float]:
        """Worker-thread side: one ONNX Runtime run, timed."""
        t0 = time.perf_counter()
        vectors = self._embedder.embed_batch(sequences)
        return vectors, (time.perf_counter() - t0) * 1000.0

    # ----------------------------------------------------------------- collector

    async def _collect(self) -> None:
        """Forever: wait for a free worker and a request, fill a batch, dispatch it."""
        assert self._slots is not None
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._dispatch(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _next_batch(self) -> list[_Request]:
        while not self._live_pending():
            self._arrival.clear()
            await self._arrival.wait()
        deadline = self._pending[0].arrived + self.max_wait_s
        while not self._batch_is_full():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._arrival.clear()
            try:
                await asyncio.wait_for(self._arrival.wait(), remaining)
            except TimeoutError:
                break
        return self._take_batch()

    def _live_pending(self) -> bool:
        """Drop requests whose callers gave up (cancelled futures); True if any remain."""
        while self._pending and self._pending[0].future.done():
            self._pending.popleft()
        return bool(self._pending)

    def _batch_is_full(self) -> bool:
        """True when the waiting requests already fill a batch (count or padded frames)."""
        count, longest = 0, 0
        for request in self._pending:
            if request.future.done():
                continue
            longest = max(longest, request.frames)
            count += 1
            if count >= self.max_batch or count * longest >= self.max_frames_per_batch:
                return True
        return False

    def _take_batch(self) -> list[_Request]:
        """Pop the oldest request plus the waiting ones closest to it in length.

        The oldest always goes (no request starves); its batch mates are picked by length so
        that little compute is spent on padding, and never past ``max_batch`` or the padded
        frame cap.
        """
        live = [r for r in self._pending if not r.future.done()]
        if not live:  # every waiting caller gave up during the wait
            self._pending.clear()
            return []
        head, rest = live[0], live[1:]
        rest.sort(key=lambda r: (abs(r.frames - head.frames), r.arrived))
        batch, longest = [head], head.frames
        for request in rest:
            if len(batch) >= self.max_batch:
                break
            padded_longest = max(longest, request.frames)
            if (len(batch) + 1) * padded_longest > self.max_frames_per_batch:
                continue
            batch.append(request)
            longest = padded_longest
        taken = {id(r) for r in batch}
        self._pending = deque(r for r in live if id(r) not in taken)
        return batch

    async def _dispatch(self, batch: list[_Request]) -> None:
        """Run one batch on a worker thread and resolve every caller's future."""
        assert self._slots is not None and self._executor is not None
        try:
            live = [r for r in batch if not r.future.done()]
            if not live:
                return
            started = time.perf_counter()
            loop = asyncio.get_running_loop()
            try:
                vectors, inference_ms = await loop.run_in_executor(
                    self._executor, self._run_batch, [r.sequence for r in live]
                )
            except Exception as exc:  # every caller of the batch gets the run's own error
                logger.warning("embedding batch of %d failed: %s", len(live), exc)
                for request in live:
                    if not request.future.done():
                        request.future.set_exception(exc)
                return
            for i, request in enumerate(live):
                if not request.future.done():
                    queue_ms = (started - request.arrived) * 1000.0
                    request.future.set_result(
                        EmbedResult(vectors[i], inference_ms, queue_ms, len(live))
                    )
        finally:
            self._slots.release()
