"""MicroBatcher: grouping, equality with unbatched runs, error propagation, shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from gaitid.contract import EMBEDDING_DIM
from gaitid.distance import l2_normalize
from gaitid.errors import InvalidSequenceError
from gaitid.service.walks.batching import BatcherClosedError, EmbedResult, MicroBatcher
from gaitid.service.walks.inference import Embedder, InferenceError
from tests.service.walks.test_inference import walks, write_contract_model


class RecordingEmbedder:
    """A deterministic stand-in: embedding = normalised [T, first pixel, 1, 0, ...].

    Records every batch it receives; ``gate`` (when given) holds each run until it is set,
    and ``fail`` makes every run raise.
    """

    def __init__(self, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.fail = fail
        self.gate_timed_out = False

    def embed_batch(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        self.batches.append([int(s.shape[0]) for s in sequences])
        if self.gate is not None and not self.gate.wait(timeout=10):
            self.gate_timed_out = True
        if self.fail:
            raise InferenceError("simulated onnxruntime failure")
        out = np.zeros((len(sequences), EMBEDDING_DIM), np.float32)
        for i, s in enumerate(sequences):
            out[i, :3] = (s.shape[0], float(s[0, 0, 0]), 1.0)
        return l2_normalize(out)


def walk(frames: int, value: int = 0) -> np.ndarray:
    return np.full((frames, 64, 44), value, np.uint8)


async def run_all(batcher: MicroBatcher, sequences: list[np.ndarray]) -> list[EmbedResult]:
    await batcher.start()
    try:
        return list(await asyncio.gather(*(batcher.embed(s) for s in sequences)))
    finally:
        await batcher.stop()


def test_concurrent_requests_share_runs_and_match_unbatched_results(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    embedder = Embedder(write_contract_model(tmp_path / "m.onnx"), device="cpu")
    sequences = walks(rng, [int(t) for t in rng.integers(1, 40, size=20)])
    alone = np.concatenate([embedder.embed_batch([s]) for s in sequences])
    batcher = MicroBatcher(embedder, max_batch=8, max_wait_ms=50)
    results = asyncio.run(run_all(batcher, sequences))
    assert max(r.batch_size for r in results) > 1
    assert all(r.batch_size <= 8 for r in results)
    np.testing.assert_allclose(np.stack([r.vector for r in results]), alone, atol=1e-5)
    assert all(r.inference_ms > 0 and r.queue_ms >= 0 for r in results)


def test_requests_keep_their_own_results_in_a_batch() -> None:
    embedder = RecordingEmbedder()
    sequences = [walk(t, value=t) for t in (3, 9, 1, 5, 7)]
    results = asyncio.run(run_all(MicroBatcher(embedder, max_batch=8, max_wait_ms=50), sequences))
    assert embedder.batches == [[3, 1, 5, 7, 9]]  # oldest first, then by closeness in length
    for s, r in zip(sequences, results, strict=True):
        expected = l2_normalize(np.array([[s.shape[0], s[0, 0, 0], 1.0]]))[0]
        np.testing.assert_allclose(r.vector[:3], expected, atol=1e-6)
        assert r.batch_size == 5


def test_batches_group_similar_lengths_and_the_oldest_goes_first() -> None:
    embedder = RecordingEmbedder()
    lengths = [10, 80, 12, 78, 11, 79]
    batcher = MicroBatcher(embedder, max_batch=2, max_wait_ms=50)
    results = asyncio.run(run_all(batcher, [walk(t) for t in lengths]))
    # each batch starts with the oldest waiting walk; its mate is the closest in length
    assert embedder.batches == [[10, 11], [80, 79], [12, 78]]
    assert [r.batch_size for r in results] == [2] * 6


def test_disabled_batching_runs_each_request_alone() -> None:
    embedder = RecordingEmbedder()
    sequences = [walk(t) for t in (2, 4, 6)]
    results = asyncio.run(run_all(MicroBatcher(embedder, enabled=False), sequences))
    assert sorted(embedder.batches) == [[2], [4], [6]]
    assert [r.batch_size for r in results] == [1, 1, 1]


def test_padded_frame_cap_splits_batches_and_long_walks_run_alone() -> None:
    embedder = RecordingEmbedder()
    sequences = [walk(40) for _ in range(5)] + [walk(150)]
    batcher = MicroBatcher(embedder, max_batch=8, max_wait_ms=50, max_frames_per_batch=100)
    results = asyncio.run(run_all(batcher, sequences))
    assert embedder.batches == [[40, 40], [40, 40], [40], [150]]  # 2 * 40 <= 100 < 3 * 40
    assert [r.batch_size for r in results] == [2, 2, 2, 2, 1, 1]


def test_a_lone_request_waits_at_most_max_wait() -> None:
    embedder = RecordingEmbedder()

    async def scenario() -> EmbedResult:
        batcher = MicroBatcher(embedder, max_batch=8, max_wait_ms=20)
        await batcher.start()
        try:
            return await asyncio.wait_for(batcher.embed(walk(3)), timeout=5)
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()).batch_size == 1


def test_run_errors_reach_every_caller_of_the_batch() -> None:
    embedder = RecordingEmbedder(fail=True)

    async def scenario() -> list[object]:
        batcher = MicroBatcher(embedder, max_batch=4, max_wait_ms=50)
        await batcher.start()
        try:
            calls = (batcher.embed(walk(t)) for t in (1, 2, 3, 4, 5))
            return list(await asyncio.gather(*calls, return_exceptions=True))
        finally:
            await batcher.stop()

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, InferenceError) for o in outcomes)
    assert embedder.batches == [[1, 2, 3, 4], [5]]


def test_a_malformed_walk_fails_only_its_own_caller() -> None:
    embedder = RecordingEmbedder()

    async def scenario() -> list[object]:
        batcher = MicroBatcher(embedder, max_batch=8, max_wait_ms=50)
        await batcher.start()
        try:
            bad = np.zeros((3, 64, 64), np.uint8)
            calls = [batcher.embed(walk(2)), batcher.embed(bad), batcher.embed(walk(4))]
            return list(await asyncio.gather(*calls, return_exceptions=True))
        finally:
            await batcher.stop()

    good_a, bad, good_b = asyncio.run(scenario())
    assert isinstance(bad, InvalidSequenceError) and "(3, 64, 64)" in str(bad)
    assert isinstance(good_a, EmbedResult) and isinstance(good_b, EmbedResult)
    assert embedder.batches == [[2, 4]]


def test_stop_fails_queued_requests_and_finishes_the_running_batch() -> None:
    gate = threading.Event()
    embedder = RecordingEmbedder(gate=gate)

    async def scenario() -> list[object]:
        batcher = MicroBatcher(embedder, max_batch=2, max_wait_ms=0)
        await batcher.start()
        tasks = [asyncio.create_task(batcher.embed(walk(t))) for t in (1, 2, 3, 4, 5)]
        while not embedder.batches:  # the first batch is running (held by the gate)
            await asyncio.sleep(0.005)
        stopping = asyncio.create_task(batcher.stop())
        await asyncio.sleep(0.02)
        gate.set()
        await stopping
        with pytest.raises(BatcherClosedError, match="not running"):
            await batcher.embed(walk(1))
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    outcomes = asyncio.run(scenario())
    assert embedder.batches == [[1, 2]]
    assert [isinstance(o, EmbedResult) for o in outcomes] == [True, True, False, False, False]
    assert all(isinstance(o, BatcherClosedError) for o in outcomes[2:])
    assert not embedder.gate_timed_out


def test_the_event_loop_keeps_running_while_a_batch_runs() -> None:
    """The gate can only be opened by the event loop, so a blocked loop would time out."""
    gate = threading.Event()
    embedder = RecordingEmbedder(gate=gate)

    async def scenario() -> EmbedResult:
        batcher = MicroBatcher(embedder, max_wait_ms=0)
        await batcher.start()
        try:
            pending = asyncio.create_task(batcher.embed(walk(3)))
            while not embedder.batches:
                await asyncio.sleep(0.005)
            assert not pending.done()
            gate.set()
            return await pending
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()).batch_size == 1
    assert not embedder.gate_timed_out


def test_cancelled_callers_are_skipped() -> None:
    gate = threading.Event()
    embedder = RecordingEmbedder(gate=gate)

    async def scenario() -> EmbedResult:
        batcher = MicroBatcher(embedder, max_batch=4, max_wait_ms=0)
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.embed(walk(1)))
            while not embedder.batches:
                await asyncio.sleep(0.005)
            doomed = asyncio.create_task(batcher.embed(walk(2)))
            kept = asyncio.create_task(batcher.embed(walk(3)))
            await asyncio.sleep(0.01)
            doomed.cancel()
            gate.set()
            await first
            return await kept
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()).batch_size == 1
    assert embedder.batches == [[1], [3]]


def test_embed_before_start_is_refused() -> None:
    async def scenario() -> None:
        with pytest.raises(BatcherClosedError, match="start"):
            await MicroBatcher(RecordingEmbedder()).embed(walk(1))

    asyncio.run(scenario())


def test_restart_after_stop_works() -> None:
    embedder = RecordingEmbedder()
    batcher = MicroBatcher(embedder, max_wait_ms=1)
    asyncio.run(run_all(batcher, [walk(1)]))
    assert asyncio.run(run_all(batcher, [walk(2)]))[0].batch_size == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 0}, "max_batch must be a positive integer"),
        ({"max_frames_per_batch": -5}, "max_frames_per_batch must be a positive integer"),
        ({"workers": 1.5}, "workers must be a positive integer"),
        ({"max_wait_ms": -1}, "max_wait_ms must be between 0 and 1000"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MicroBatcher(RecordingEmbedder(), **kwargs)  # type: ignore[arg-type]


def test_a_batch_whose_callers_all_gave_up_is_dropped() -> None:
    embedder = RecordingEmbedder()

    async def scenario() -> EmbedResult:
        batcher = MicroBatcher(embedder, max_batch=4, max_wait_ms=50)
        await batcher.start()
        try:
            doomed = asyncio.create_task(batcher.embed(walk(2)))
            await asyncio.sleep(0.01)  # the collector is now waiting for batch mates
            doomed.cancel()
            await asyncio.sleep(0.1)  # past the deadline: the collector finds nobody left
            return await asyncio.wait_for(batcher.embed(walk(5)), timeout=5)
        finally:
            await batcher.stop()

    assert asyncio.run(scenario()).batch_size == 1
    assert embedder.batches == [[5]]
