"""VectorIndex: every kind behaves like exact inner-product search with explicit, stable ids."""

from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest

from gaitid.distance import l2_normalize
from gaitid.service.search.index import (
    IVF_POINTS_PER_CENTROID,
    GpuUnavailableError,
    VectorIndex,
    auto_ivf_params,
    gpu_available,
)
from gaitid.service.search.index import ivf as ivf_module
from gaitid.service.search.index.backend import IndexBackend
from gaitid.service.search.index.flat import FlatBackend
from gaitid.service.search.index.hnsw import HnswBackend
from gaitid.service.search.index.ivf import IvfBackend

DIM = 16
NLIST = 4  # IVF trains once it holds 39 * 4 = 156 vectors
KINDS = ("auto", "flat", "ivf", "hnsw")


def make_index(kind: str, **kwargs: object) -> VectorIndex:
    params: dict[str, object] = {"use_gpu": False, "nlist": NLIST, "nprobe": NLIST, "hnsw_m": 8}
    params.update(kwargs)
    return VectorIndex(DIM, kind, **params)  # type: ignore[arg-type]


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    return l2_normalize(rng.standard_normal((n, DIM)))


def exact_top(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[order]


@pytest.mark.parametrize("kind", KINDS)
def test_add_search_returns_exact_neighbours_with_large_gappy_ids(
    kind: str, rng: np.random.Generator
) -> None:
    index = make_index(kind)
    ids = np.array([0, 5, 2**40 + 3, 2**62, 17, 9_999_999_999], np.int64)
    ids = np.concatenate([ids, 10**12 + 7 * np.arange(194, dtype=np.int64)])  # 200 ids, gaps
    vectors = unit(rng, len(ids))
    index.add(ids, vectors)
    assert len(index) == 200
    assert np.array_equal(index.ids(), np.sort(ids))
    scores, found = index.search(vectors[:6], 3)
    assert found.shape == (6, 3) and scores.dtype == np.float32
    assert np.array_equal(found[:, 0], ids[:6])  # each vector finds itself first
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # descending
    if kind == "flat":
        queries = unit(rng, 10)
        assert np.array_equal(index.search(queries, 5)[1], exact_top(ids, vectors, queries, 5))


@pytest.mark.parametrize("kind", KINDS)
def test_remove_makes_vectors_unfindable(kind: str, rng: np.random.Generator) -> None:
    index = make_index(kind)
    ids = np.arange(100, 300, dtype=np.int64) * 3
    vectors = unit(rng, len(ids))
    index.add(ids, vectors)
    gone = ids[::10]  # 20 of 200 = 10%: HNSW compacts exactly at this point
    assert index.remove(np.concatenate([gone, [1, 2]])) == len(gone)  # unknown ids ignored
    assert len(index) == 180 and not set(gone.tolist()) & set(index.ids().tolist())
    _, found = index.search(vectors[::10], 10)
    assert not np.isin(found, gone).any()
    assert index.remove(gone) == 0


def test_hnsw_tombstones_hide_and_erase_without_compaction(rng: np.random.Generator) -> None:
    index = make_index("hnsw")
    ids = np.arange(200, dtype=np.int64)
    vectors = unit(rng, 200)
    index.add(ids, vectors)
    assert index.remove(ids[:5]) == 5  # 2.5%: stays a tombstone
    scores, found = index.search(vectors[:5], 1)
    assert not np.isin(found, ids[:5]).any()
    assert np.all(scores[:, 0] < 0.999)  # nobody else is the same vector
    assert index.search(vectors[5:6], 1)[1][0, 0] == 5
    # the stored bytes of the removed vectors are zeroed (erasure), the others untouched
    storage = faiss.downcast_index(index._backend._hnsw.storage)
    rows = faiss.rev_swig_ptr(storage.get_xb(), 200 * DIM).reshape(200, DIM)
    assert not rows[:5].any() and np.array_equal(rows[5:], vectors[5:])


def test_flat_removal_drops_the_stored_rows(rng: np.random.Generator) -> None:
    index = make_index("flat")
    vectors = unit(rng, 10)
    index.add(np.arange(10), vectors)
    index.remove(np.array([2, 3]))
    _, rows = index._backend.contents()
    assert rows.shape == (8, DIM)
    assert not (np.abs(rows[:, None, :] - vectors[None, 2:4, :]).max(axis=2) < 1e-7).any()


def test_ivf_scans_codes_but_returns_exact_scores_and_erases_removed_vectors(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ivf_module, "SLOT_BLOCK_ROWS", 64)  # the rows span 7 blocks
    index = make_index("ivf", nprobe=NLIST)
    ids = np.arange(400, dtype=np.int64) * 11
    vectors = unit(rng, 400)
    index.add(ids, vectors)
    assert index.trained
    queries = unit(rng, 30)
    scores, found = index.search(queries, 5)
    # every list probed, candidates re-ranked: the exact top 5 with their exact inner products
    assert np.array_equal(found, exact_top(ids, vectors, queries, 5))
    expected = np.einsum("qkd,qd->qk", vectors[found // 11], queries)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)
    trained = index._backend._trained
    assert isinstance(trained.ivf, faiss.IndexIVFScalarQuantizer)  # the scan reads 8-bit codes
    # removal zeroes the exact row and frees the slot; the next add reuses it
    index.remove(ids[[3, 4]])
    slots_freed = np.flatnonzero(trained.store.slot_ids[: len(ids)] == -1)
    assert len(slots_freed) == 2 and not trained.store.gather(slots_freed).any()
    fresh = unit(rng, 3)
    index.add(np.array([5, 6, 7], np.int64), fresh)
    assert not (trained.store.slot_ids == -1)[: len(ids) + 1].any()  # both slots reused
    kept_ids, kept_rows = index._backend.contents()
    order = np.argsort(kept_ids)
    assert np.array_equal(
        kept_ids[order], np.sort(np.concatenate([np.delete(ids, [3, 4]), [5, 6, 7]]))
    )
    by_id = dict(zip(kept_ids.tolist(), kept_rows, strict=True))
    np.testing.assert_array_equal(by_id[6], fresh[1])
    np.testing.assert_array_equal(by_id[ids[10]], vectors[10])
    _, found = index.search(fresh, 1)
    assert np.array_equal(found[:, 0], [5, 6, 7])


@pytest.mark.parametrize("kind", KINDS)
def test_re_adding_an_id_replaces_its_vector(kind: str, rng: np.random.Generator) -> None:
    index = make_index(kind)
    ids = np.arange(50, dtype=np.int64)
    vectors = unit(rng, 50)
    index.add(ids, vectors)
    fresh = unit(rng, 1)
    index.add(np.array([7]), fresh)
    assert len(index) == 50
    scores, found = index.search(fresh, 2)
    assert found[0, 0] == 7 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    scores_old, found_old = index.search(vectors[7:8], 50)
    # id 7 now scores as the new vector against the old query
    score_7 = scores_old[0][found_old[0] == 7]
    np.testing.assert_allclose(score_7, [float(vectors[7] @ fresh[0])], atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_k_larger_than_index_pads_with_minus_one(kind: str, rng: np.random.Generator) -> None:
    index = make_index(kind)
    index.add(np.array([3, 11, 40]), unit(rng, 3))
    scores, found = index.search(unit(rng, 2), 5)
    assert found.shape == (2, 5)
    assert np.array_equal(np.sort(found[:, :3], axis=1), [[3, 11, 40]] * 2)
    assert np.all(found[:, 3:] == -1) and np.all(np.isneginf(scores[:, 3:]))
    assert np.all(np.isfinite(scores[:, :3]))


@pytest.mark.parametrize("kind", KINDS)
def test_empty_index(kind: str, rng: np.random.Generator) -> None:
    index = make_index(kind)
    assert len(index) == 0 and index.ids().shape == (0,)
    scores, found = index.search(unit(rng, 2), 4)
    assert np.all(found == -1) and np.all(np.isneginf(scores))
    index.add(np.empty(0, np.int64), np.empty((0, DIM), np.float32))
    assert len(index) == 0
    assert index.search(np.empty((0, DIM), np.float32), 3)[1].shape == (0, 3)


@pytest.mark.parametrize("kind", KINDS)
def test_rebuild_replaces_all_contents(kind: str, rng: np.random.Generator) -> None:
    index = make_index(kind)
    index.add(np.arange(30), unit(rng, 30))
    new_ids = np.arange(1000, 1020, dtype=np.int64)
    new_vectors = unit(rng, 20)
    index.rebuild(new_ids, new_vectors)
    assert np.array_equal(index.ids(), new_ids)
    _, found = index.search(new_vectors, 1)
    assert np.array_equal(found[:, 0], new_ids)
    index.rebuild(np.empty(0, np.int64), np.empty((0, DIM), np.float32))
    assert len(index) == 0 and np.all(index.search(new_vectors, 1)[1] == -1)


def test_ivf_is_exact_until_it_has_enough_vectors_to_train(rng: np.random.Generator) -> None:
    index = make_index("ivf", nprobe=1)
    threshold = IVF_POINTS_PER_CENTROID * NLIST
    ids = np.arange(threshold + 40, dtype=np.int64)
    vectors = unit(rng, len(ids))
    index.add(ids[: threshold - 1], vectors[: threshold - 1])
    assert not index.trained
    queries = unit(rng, 20)
    expected = exact_top(ids[: threshold - 1], vectors[: threshold - 1], queries, 5)
    assert np.array_equal(index.search(queries, 5)[1], expected)
    index.add(ids[threshold - 1 :], vectors[threshold - 1 :])
    assert index.trained and len(index) == len(ids)
    _, found = index.search(vectors[:50], 1)  # one probed list still holds the vector itself
    assert np.array_equal(found[:, 0], ids[:50])
    index.rebuild(ids[:10], vectors[:10])
    assert not index.trained  # too few to train again: exact search
    index.rebuild(ids, vectors)
    assert index.trained


def test_auto_parameters_follow_the_gallery_size() -> None:
    assert auto_ivf_params(50_000) == (1024, 256)  # 4 sqrt(n) lists, at least 256 probed
    assert auto_ivf_params(200_000) == (2048, 256)
    assert auto_ivf_params(1_000_000) == (4096, 384)  # 3/32 of the lists
    assert auto_ivf_params(100) == (2, 2)  # never fewer than 39 vectors per list


def test_auto_is_exact_when_small_and_ivf_sized_for_the_gallery_once_large(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ivf_module, "AUTO_EXACT_BELOW", 400)
    index = make_index("auto")
    ids = np.arange(2000, dtype=np.int64) * 5 + 7
    vectors = unit(rng, len(ids))
    index.add(ids[:399], vectors[:399])
    assert not index.trained
    queries = unit(rng, 10)
    assert np.array_equal(
        index.search(queries, 5)[1], exact_top(ids[:399], vectors[:399], queries, 5)
    )
    index.add(ids[399:400], vectors[399:400])  # crosses: trained for 400 templates
    assert index.wait_for_training(60)
    assert index.trained and index.ivf_params == auto_ivf_params(400)
    index.add(ids[400:1599], vectors[400:1599])  # grown 3.99x: same lists
    assert index.wait_for_training(60) and index.ivf_params == auto_ivf_params(400)
    index.add(ids[1599:], vectors[1599:])  # past 4x: trained again for its size, nothing lost
    assert index.wait_for_training(60)
    assert index.ivf_params == auto_ivf_params(2000) != auto_ivf_params(400)
    assert len(index) == len(ids)
    _, found = index.search(vectors, 1)
    assert np.array_equal(found[:, 0], ids)
    assert index.remove(ids[:1801]) == 1801  # 199 left, under half the threshold: exact again
    assert not index.trained and index.ivf_params is None
    expected = exact_top(ids[1801:], vectors[1801:], queries, 5)
    assert np.array_equal(index.search(queries, 5)[1], expected)
    index.rebuild(ids[:1000], vectors[:1000])  # a rebuild chooses by size too
    assert index.trained and index.ivf_params == auto_ivf_params(1000)


def _held_training(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make auto's background training wait for ``release``; ``started`` says it began."""
    started, release = threading.Event(), threading.Event()
    real = ivf_module.train_ivf

    def held(*args: object, **kwargs: object) -> object:
        started.set()
        assert release.wait(30)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ivf_module, "train_ivf", held)
    return started, release


def test_auto_trains_off_the_lock_and_replays_what_changed_meanwhile(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ivf_module, "AUTO_EXACT_BELOW", 400)
    started, release = _held_training(monkeypatch)
    index = make_index("auto")
    ids = np.arange(600, dtype=np.int64) * 3 + 1
    vectors = unit(rng, len(ids))
    index.add(ids[:400], vectors[:400])
    assert started.wait(10) and not index.trained
    # while the copy trains: searches answer exactly, writes land in both
    queries = unit(rng, 5)
    assert np.array_equal(
        index.search(queries, 3)[1], exact_top(ids[:400], vectors[:400], queries, 3)
    )
    index.add(ids[400:], vectors[400:])  # new templates
    index.remove(ids[:50])  # removed ones
    replaced = unit(rng, 10)
    index.add(ids[100:110], replaced)  # re-enrolled ones
    vectors[100:110] = replaced
    assert not index.wait_for_training(0.05)  # still held
    release.set()
    assert index.wait_for_training(30) and index.trained
    assert len(index) == 550
    _, found = index.search(vectors[50:], 1)
    assert np.array_equal(found[:, 0], ids[50:])  # every live template, with its latest vector
    removed = set(index.search(vectors[:50], 5)[1].ravel().tolist())
    assert not removed & set(ids[:50].tolist())


def test_auto_drops_a_training_a_rebuild_overtook_and_survives_a_failed_one(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ivf_module, "AUTO_EXACT_BELOW", 400)
    started, release = _held_training(monkeypatch)
    index = make_index("auto")
    ids = np.arange(500, dtype=np.int64)
    vectors = unit(rng, len(ids))
    index.add(ids[:400], vectors[:400])
    assert started.wait(10)
    index.rebuild(ids[:100], vectors[:100])  # small now: exact
    release.set()
    assert index.wait_for_training(30)
    assert not index.trained and len(index) == 100  # the old training was thrown away
    assert np.array_equal(index.search(vectors[:100], 1)[1][:, 0], ids[:100])

    def broken(*args: object, **kwargs: object) -> object:
        raise MemoryError("no room for k-means")

    monkeypatch.setattr(ivf_module, "train_ivf", broken)
    index.add(ids[100:], vectors[100:])
    assert index.wait_for_training(30)
    assert not index.trained and len(index) == 500  # still serving, exactly
    assert np.array_equal(index.search(vectors, 1)[1][:, 0], ids)


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_dimensions_raise_value_error_naming_shapes(
    kind: str, rng: np.random.Generator
) -> None:
    index = make_index(kind)
    with pytest.raises(ValueError, match=r"\(n, 16\); got \(3, 8\)"):
        index.add(np.arange(3), rng.standard_normal((3, 8)).astype(np.float32))
    with pytest.raises(ValueError, match=r"\(n, 16\); got \(16,\)"):
        index.search(np.ones(DIM, np.float32), 1)
    with pytest.raises(ValueError, match=r"\(n, 16\); got \(2, 17\)"):
        index.rebuild(np.arange(2), np.ones((2, 17), np.float32))


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        (np.arange(3), np.ones((2, DIM)), "got 3 ids for 2 vectors"),
        (np.array([1, 1]), np.ones((2, DIM)), r"unique.*\[1\]"),
        (np.array([-1, 2]), np.ones((2, DIM)), "ids must be >= 0"),
        (np.array([0.5, 2.0]), np.ones((2, DIM)), "ids must be integers"),
        (np.arange(4).reshape(2, 2), np.ones((2, DIM)), "one-dimensional"),
        (np.arange(2), np.full((2, DIM), np.nan), "NaN"),
        (np.arange(2), np.full((2, DIM), "x"), "real numbers"),
    ],
)
def test_bad_add_arguments_are_rejected(ids: object, vectors: object, message: str) -> None:
    index = make_index("flat")
    with pytest.raises(ValueError, match=message):
        index.add(ids, vectors)  # type: ignore[arg-type]
    assert len(index) == 0


@pytest.mark.parametrize("k", [0, -2, 1.5, True])
def test_bad_k_is_rejected(k: object) -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        make_index("flat").search(np.ones((1, DIM), np.float32), k)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "annoy"}, "not one of"),
        ({"nlist": 0}, "nlist must be a positive integer"),
        ({"kind": "ivf", "nlist": 4, "nprobe": 8}, "cannot exceed nlist"),
        ({"use_gpu": "yes"}, "use_gpu must be"),
    ],
)
def test_bad_construction_is_rejected(kwargs: dict[str, object], message: str) -> None:
    params: dict[str, object] = {"kind": "flat", "use_gpu": False}
    params.update(kwargs)
    with pytest.raises(ValueError, match=message):
        VectorIndex(DIM, **params)  # type: ignore[arg-type]


def test_gpu_auto_uses_cpu_without_a_device_and_hnsw_never_on_gpu() -> None:
    assert not VectorIndex(DIM, "hnsw", use_gpu="auto").on_gpu
    assert VectorIndex(DIM, "flat", use_gpu="auto").on_gpu == gpu_available()
    with pytest.raises(GpuUnavailableError, match="HNSW"):
        VectorIndex(DIM, "hnsw", use_gpu=True)


@pytest.mark.skipif(gpu_available(), reason="a GPU is visible to faiss")
def test_forcing_the_gpu_without_one_fails_clearly() -> None:
    with pytest.raises(GpuUnavailableError, match="no GPU support or sees no device"):
        VectorIndex(DIM, "flat", use_gpu=True)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_gpu_index_matches_cpu(kind: str, rng: np.random.Generator) -> None:
    if not gpu_available():
        pytest.skip("faiss sees no GPU")
    cpu, gpu = make_index(kind), make_index(kind, use_gpu=True)
    assert gpu.on_gpu
    ids = np.arange(400, dtype=np.int64) * 5
    vectors = unit(rng, 400)
    for index in (cpu, gpu):
        index.add(ids[:300], vectors[:300])
        index.search(vectors[:2], 3)  # builds the replica, then appends follow it
        index.add(ids[300:], vectors[300:])
        index.remove(ids[:20])
    queries = unit(rng, 20)
    assert np.array_equal(cpu.search(queries, 5)[1], gpu.search(queries, 5)[1])


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_add_remove_and_search_keep_the_index_consistent(
    kind: str, rng: np.random.Generator
) -> None:
    index = make_index(kind)
    vectors = unit(rng, 400)
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for start in range(offset, 400, 40):
                ids = np.arange(start, start + 20, dtype=np.int64)
                index.add(ids, vectors[start : start + 20])
                index.remove(ids[:2])
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(30):
                _, found = index.search(vectors[:8], 5)
                assert found.shape == (8, 5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(o,)) for o in (0, 20)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    expected = np.array([i for i in range(400) if i % 20 >= 2], np.int64)
    assert np.array_equal(index.ids(), expected)
    _, found = index.search(vectors[expected], 1)
    assert np.array_equal(found[:, 0], expected)


def test_search_params_trade_speed_for_recall_without_rebuild(rng: np.random.Generator) -> None:
    index = make_index("ivf", nprobe=1)
    ids = np.arange(400, dtype=np.int64)
    vectors = unit(rng, 400)
    index.add(ids, vectors)
    assert index.trained
    queries = unit(rng, 30)
    index.set_search_params(nprobe=NLIST)  # every list probed: exact
    assert np.array_equal(index.search(queries, 5)[1], exact_top(ids, vectors, queries, 5))
    with pytest.raises(ValueError, match=r"nprobe \(5\) cannot exceed nlist \(4\)"):
        index.set_search_params(nprobe=5)
    with pytest.raises(ValueError, match="ef_search must be a positive integer"):
        index.set_search_params(ef_search=0)
    hnsw = make_index("hnsw", ef_search=1)
    hnsw.add(ids, vectors)
    hnsw.set_search_params(ef_search=400)
    assert np.array_equal(hnsw.search(queries, 5)[1], exact_top(ids, vectors, queries, 5))


#: Every index kind's backend, as ``VectorIndex`` builds it (IVF big enough to train here).
BACKENDS = {
    "flat": lambda: FlatBackend(DIM),
    "ivf": lambda: IvfBackend(DIM, NLIST, NLIST),
    "auto": lambda: IvfBackend(DIM, NLIST, NLIST, adaptive=True),
    "hnsw": lambda: HnswBackend(DIM, 8, 64),
}


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_every_backend_keeps_the_one_interface(kind: str, rng: np.random.Generator) -> None:
    """The same calls, the same answers: what ``VectorIndex`` relies on of each kind."""
    backend = BACKENDS[kind]()
    assert isinstance(backend, IndexBackend)
    ids = np.arange(0, 400 * 7, 7, dtype=np.int64)
    vectors = unit(rng, len(ids)).astype(np.float32)
    backend.add(ids, vectors)
    assert backend.size == len(ids)
    held_ids, held = backend.contents()
    order = np.argsort(held_ids)
    assert np.array_equal(held_ids[order], ids) and np.allclose(held[order], vectors)
    queries = vectors[:5]
    _, labels = backend.search(queries, 1)
    assert labels[:, 0].tolist() == ids[:5].tolist()
    assert backend.remove(ids[:5]) == 5 and backend.remove(ids[:5]) == 0
    _, labels = backend.search(queries, 3)
    assert not set(labels.ravel().tolist()) & set(ids[:5].tolist())
    backend.fill(ids[:50], vectors[:50])
    assert backend.size == 50 and sorted(backend.contents()[0].tolist()) == ids[:50].tolist()
    backend.set_search_params(nprobe=2, ef_search=32)  # each takes what applies to it
    assert backend.training_due() is False  # auto trains at AUTO_EXACT_BELOW, not here
    assert (backend.ivf_params is None) == (not backend.trained or kind in ("flat", "hnsw"))
