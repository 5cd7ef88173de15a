"""In-memory FAISS index of gallery templates, searched by inner product.

The service stores L2-normalised 256-d embeddings, so inner product equals cosine similarity.
SQL is the source of truth; this index is a cache rebuilt from it (``rebuild``) and updated
after each commit. Every public method takes one internal lock, so the API can call it from
any thread (the event loop, the inference worker) without extra care.

Four kinds, chosen per deployment (``GAITID_INDEX_KIND``); ``auto`` is the default:

- ``auto``: each gallery picks for itself from its size (the choice and the measurements behind
  it are in BENCHMARKS.md, "Search at scale"). Below :data:`AUTO_EXACT_BELOW` templates it is
  the exact ``flat`` index: at that size an exact search is already fast, and nothing needs
  tuning or training. From there on it is IVF with :func:`auto_ivf_params` lists and probes
  for its size, trained on the gallery at the moment it crosses; when the gallery has grown
  :data:`AUTO_RETRAIN_GROWTH` times since the last training, the lists are trained again for
  the new size. Training runs in a background thread on a snapshot (about 10 s at the first
  crossing, 40 s at 200k, 3 min at 800k on two cores; BENCHMARKS.md) while the current index
  keeps answering and taking writes; the writes made meanwhile are replayed onto the new index
  before it takes over, under the lock (memory: a second copy of the vectors meanwhile). A
  gallery that shrinks below half the threshold goes back to exact search. ``rebuild`` trains
  in place (start-up, ``gaitid index rebuild``).
- ``flat``: ``IndexIDMap2(IndexFlatIP)``. Exact; search is O(N) per query. Removal compacts
  the stored rows (O(N) memory move) and the vector bytes are gone at once.
- ``ivf``: inverted lists over 8-bit codes (``IndexIVFScalarQuantizer``, inner product,
  ``nlist`` lists, ``nprobe`` probed), whose best ``4 k`` candidates are re-ranked by their
  exact inner products with the fp32 vectors, kept beside the codes. A probe scans a quarter
  of the bytes fp32 lists would make it read, and the re-ranking gives back the recall the
  codes lose; the scores returned are exact, so a threshold means the same as on a flat index
  (BENCHMARKS.md: at 1M templates, recall@10 0.990 in under 5 ms on two cores; memory about
  that of fp32 lists). k-means needs data: until the index holds ``39 * nlist`` vectors
  (FAISS's own minimum of 39 points per centroid) it stays an exact flat index, which at that
  size is fast anyway; once it gets there the centroids are trained on everything present and
  the vectors move over. The centroids are not retrained as the gallery grows; ``rebuild``
  (``gaitid index rebuild``) trains them again on the current contents. Removal uses a
  hash-table direct map, so it touches only the affected list, and erases the codes and the
  exact vector at once.
- ``hnsw``: ``IndexHNSWFlat`` (``hnsw_m`` links, ``ef_search`` at query time) with inner
  product. HNSW cannot delete graph nodes, so removal is a tombstone: the node's position is
  excluded from every search by a bitmap selector and its stored vector is overwritten with
  zeros at once (the biometric bytes are erased; only the graph links stay). An ``IndexIDMap2``
  wrapper is not used because it cannot tell a replaced entry from its replacement (both carry
  the same id); a position table maps graph positions to ids instead. When tombstones reach 10%
  of the nodes the graph is rebuilt from the live vectors (cost: a full HNSW build, minutes at
  a million templates on two cores; amortised over the deletions that caused it).

GPU: with ``use_gpu`` true (or ``"auto"`` and a faiss build with GPU support that sees a
device) the flat and IVF kinds keep their CPU index as the master copy and search a replica
made by ``index_cpu_to_gpu``. Appends go to both; a removal or replacement marks the replica
stale and it is uploaded again before the next search (O(N) host-to-device copy, so GPU suits
read-heavy galleries). HNSW has no FAISS GPU implementation and always runs on the CPU.

Scores of empty result slots (``k`` larger than the index, or IVF probing too few lists) are
``-inf`` with id ``-1``.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import faiss
import numpy as np
from numpy.typing import NDArray

from gaitid.errors import GaitidError

logger = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]
#: ``(queries, k) -> (scores, labels)``: a faiss index's search, such as a GPU replica's.
Searcher = Callable[[NDArray[np.float32], int], tuple[NDArray[np.float32], NDArray[np.int64]]]
INDEX_KINDS: tuple[IndexKind, ...] = ("auto", "flat", "ivf", "hnsw")

#: FAISS asks for at least this many training points per IVF centroid.
IVF_POINTS_PER_CENTROID = 39
#: k-means of the IVF lists runs on at most this many sampled vectors per list.
IVF_TRAIN_POINTS_PER_LIST = 64
#: Rows per block of the exact vectors kept beside IVF's 8-bit codes (64 MB at 256-d).
SLOT_BLOCK_ROWS = 65_536
#: Fraction of tombstoned HNSW nodes that triggers a rebuild of the graph.
HNSW_COMPACT_FRACTION = 0.1

#: ``auto``: galleries smaller than this are searched exactly (BENCHMARKS.md, search at scale).
AUTO_EXACT_BELOW = 50_000
#: ``auto``: IVF lists per square root of the gallery size, rounded to a power of two.
AUTO_LISTS_PER_ROOT = 4
#: ``auto``: lists probed per search, as a fraction of the lists ...
AUTO_PROBED_FRACTION = 3 / 32
#: ... but never fewer than this many (fewer lists need a larger fraction for the same recall).
AUTO_MIN_PROBES = 256
#: ``auto``: the IVF lists are trained again once the gallery is this many times the size
#: they were trained at (lists that grew 4x cost 4x per probe).
AUTO_RETRAIN_GROWTH = 4


def auto_ivf_params(n: int) -> tuple[int, int]:
    """``(nlist, nprobe)`` the ``auto`` kind gives an IVF index over ``n`` templates.

    Measured on galleries shaped like the shipped model's embeddings (BENCHMARKS.md, search
    at scale, which has the latencies): recall@10 against exact search follows the fraction
    of lists probed, and about 0.99 takes a quarter of 1,024 lists at 100k templates (0.998)
    or 3/32 of 4,096 at 1M (0.990).
    """
    nlist = 2 ** round(math.log2(AUTO_LISTS_PER_ROOT * math.sqrt(max(n, 1))))
    nlist = max(1, min(nlist, n // IVF_POINTS_PER_CENTROID))
    return nlist, min(nlist, max(AUTO_MIN_PROBES, round(nlist * AUTO_PROBED_FRACTION)))


class GpuUnavailableError(GaitidError):
    """``use_gpu=True`` was requested but faiss has no GPU support or sees no device."""


def gpu_available() -> bool:
    """Whether this faiss build has GPU support and sees at least one device."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@functools.cache
def _gpu_resources() -> Any:
    """One ``StandardGpuResources`` per process, shared by every GPU index.

    Each instance reserves its own scratch memory (a share of the device), and the service
    keeps one index per gallery, so per-index resources would exhaust the GPU. This cache is
    the one process-wide object here; it holds a device handle, never data.
    """
    return faiss.StandardGpuResources()


def _flat_rows(flat: Any) -> NDArray[np.float32]:
    """Copy of the vectors stored in a faiss ``IndexFlat`` as ``[ntotal, d]``."""
    n, d = int(flat.ntotal), int(flat.d)
    if n == 0:
        return np.empty((0, d), np.float32)
    return faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d).copy()


class _FlatBackend:
    """Exact search: ``IndexIDMap2(IndexFlatIP)``.

    Each backend offers ``add`` (new ids only; returns the labels under which the vectors were
    appended to :meth:`faiss_index`'s object, so a GPU replica can follow with the same append,
    or None when it must be copied again), ``remove``, ``search`` and
    ``faiss_index`` (what a GPU replica is cloned from; None when there is no GPU version).
    :class:`VectorIndex` validates arguments, tracks the ids and holds the lock.
    """

    def __init__(self, dim: int) -> None:
        self._flat = faiss.IndexFlatIP(dim)
        self._index = faiss.IndexIDMap2(self._flat)

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> NDArray[np.int64]:
        self._index.add_with_ids(vectors, ids)
        return ids

    def remove(self, ids: NDArray[np.int64]) -> int:
        return int(self._index.remove_ids(ids))  # type: ignore[arg-type]  # swig accepts arrays

    def search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        scores, labels = self._index.search(queries, k)
        return scores, labels

    def faiss_index(self) -> Any:
        return self._index

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def contents(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """All ``(ids, vectors)`` held, in storage order."""
        return faiss.vector_to_array(self._index.id_map).astype(np.int64), _flat_rows(self._flat)


class _SlotStore:
    """The exact vectors of a trained IVF index, one row per slot, for re-ranking and reading.

    The inverted lists hold 8-bit codes filed under slot numbers (not ids): a search hands
    back slots, whose rows are gathered here. A removed template's row is zeroed at once (the
    biometric bytes are gone, as the codes are) and its slot is reused by a later add. Rows
    live in fixed blocks of :data:`SLOT_BLOCK_ROWS`, so the store grows by adding a block and
    never copies what it holds: at a million templates the rows are 1 GB, and one enrolment
    must not move them all while searches wait for the lock.
    """

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._blocks: list[NDArray[np.float32]] = []
        self.slot_ids = np.empty(0, np.int64)  # slot -> id; -1 for a free slot
        self._id_slot: dict[int, int] = {}
        self._free: list[int] = []
        self._used = 0  # slots below this were handed out at some point

    @property
    def size(self) -> int:
        return len(self._id_slot)

    def _by_block(self, slots: NDArray[np.int64]) -> list[tuple[int, NDArray[np.bool_], Any]]:
        """``(block, which of slots, rows within the block)`` for each block ``slots`` touch."""
        block, row = np.divmod(slots, SLOT_BLOCK_ROWS)
        groups = []
        for b in np.unique(block).tolist():
            chosen = block == b
            groups.append((b, chosen, row[chosen]))
        return groups

    def put(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> NDArray[np.int64]:
        """Store vectors under new ``ids``; return the slots they got."""
        reused = [self._free.pop() for _ in range(min(len(ids), len(self._free)))]
        fresh = np.arange(self._used, self._used + len(ids) - len(reused), dtype=np.int64)
        self._used += len(fresh)
        slots = np.concatenate([np.asarray(reused, np.int64), fresh])
        while len(self._blocks) * SLOT_BLOCK_ROWS < self._used:
            self._blocks.append(np.zeros((SLOT_BLOCK_ROWS, self._dim), np.float32))
        for block, chosen, rows in self._by_block(slots):
            self._blocks[block][rows] = vectors[chosen]
        self.slot_ids = _with_capacity(self.slot_ids, self._used, fill=-1)
        self.slot_ids[slots] = ids
        self._id_slot.update(zip(ids.tolist(), slots.tolist(), strict=True))
        return slots

    def gather(self, slots: NDArray[np.int64]) -> NDArray[np.float32]:
        """The rows of ``slots`` (any shape; every slot must have been handed out)."""
        flat = slots.reshape(-1)
        out = np.empty((flat.size, self._dim), np.float32)
        for block, chosen, rows in self._by_block(flat):
            out[chosen] = self._blocks[block][rows]
        return out.reshape(*slots.shape, self._dim)

    def drop(self, ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Forget ``ids`` (unknown ones ignored), zero their rows; return their slots."""
        slots = np.asarray(
            [self._id_slot.pop(i) for i in ids.tolist() if i in self._id_slot], np.int64
        )
        for block, _, rows in self._by_block(slots):
            self._blocks[block][rows] = 0.0
        self.slot_ids[slots] = -1
        self._free.extend(slots.tolist())
        return slots

    def contents(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Every live ``(ids, vectors)``, in slot order."""
        live = np.flatnonzero(self.slot_ids[: self._used] >= 0)
        return self.slot_ids[live].copy(), self.gather(live)


#: The IVF index scans 8-bit codes for this many candidates per result wanted, then ranks them
#: by their exact inner products (BENCHMARKS.md, search at scale: 4 gives back all the recall
#: the codes lose).
IVF_RERANK_FACTOR = 4


class _TrainedIvf:
    """IVF over 8-bit codes (``IndexIVFScalarQuantizer``) whose candidates are re-ranked exactly.

    Built whole by :func:`_train_ivf` (new objects, so no lock is needed while it trains), then
    adopted by an :class:`_IvfBackend`. The codes are a quarter of the vectors' bytes, which is
    what a probe's scan reads; the exact vectors stay in a :class:`_SlotStore` beside them, so
    the scores handed back are exact inner products (thresholds mean the same as with a flat
    index) and the contents can be read back to train again.
    """

    def __init__(self, dim: int, nlist: int, nprobe: int, vectors: NDArray[np.float32]) -> None:
        self.quantizer = faiss.IndexFlatIP(dim)  # the IVF index borrows it: keep both alive
        self.ivf = faiss.IndexIVFScalarQuantizer(
            self.quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        # k-means on a sample of IVF_TRAIN_POINTS_PER_LIST per list: FAISS's default of 256
        # makes training 4x slower; the recall reached with 64 is in BENCHMARKS.md
        self.ivf.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_LIST
        self.ivf.train(vectors)
        self.ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        self.ivf.nprobe = self.nprobe = nprobe
        # one query's probed lists are scanned in parallel: /identify searches one probe at a
        # time, which the default (parallel over queries) would leave on one thread
        self.ivf.parallel_mode = 1
        self.nlist = nlist
        self.store = _SlotStore(dim)
        self.trained_size = len(vectors)

    @property
    def size(self) -> int:
        return self.store.size

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> NDArray[np.int64]:
        """Add new ``ids``; return the labels (slots) the inverted lists filed them under."""
        slots = self.store.put(ids, vectors)
        self.ivf.add_with_ids(vectors, slots)
        return slots

    def remove(self, ids: NDArray[np.int64]) -> int:
        slots = self.store.drop(ids)
        if len(slots):
            # a plain array becomes an IDSelectorArray, the only selector the hash map accepts
            self.ivf.remove_ids(slots)  # type: ignore[arg-type]  # swig accepts arrays
        return len(slots)

    def set_nprobe(self, nprobe: int) -> None:
        self.ivf.nprobe = self.nprobe = min(nprobe, self.nlist)

    def search(
        self, queries: NDArray[np.float32], k: int, scan: Searcher | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top ``k`` by exact inner product among the codes' best ``k * IVF_RERANK_FACTOR``.

        ``scan`` replaces the CPU scan of the codes (a GPU replica's ``search``).
        """
        _, slots = (scan or self.ivf.search)(queries, k * IVF_RERANK_FACTOR)
        slots = np.asarray(slots, np.int64)
        found = slots >= 0
        safe = np.where(found, slots, 0)
        exact = np.einsum("qcd,qd->qc", self.store.gather(safe), queries)
        exact = np.where(found, exact, -np.inf).astype(np.float32)
        best = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(exact, best, axis=1)
        labels = self.store.slot_ids[np.take_along_axis(safe, best, axis=1)]
        return scores, np.where(np.isfinite(scores), labels, -1)


def _train_ivf(
    dim: int, ids: NDArray[np.int64], vectors: NDArray[np.float32], nlist: int, nprobe: int
) -> _TrainedIvf:
    """k-means the lists on ``vectors`` and file them under ``ids`` (new objects: no lock)."""
    trained = _TrainedIvf(dim, nlist, nprobe, vectors)
    trained.add(ids, vectors)
    logger.info("IVF index trained: %d lists (%d probed) on %d vectors", nlist, nprobe, len(ids))
    return trained


class _IvfBackend:
    """IVF over 8-bit codes with exact re-ranking (:class:`_TrainedIvf`) once trained; exact
    flat search before that.

    ``ivf``: trained in place (under the caller's lock) the moment it holds
    ``39 * nlist`` vectors. ``adaptive`` (the ``auto`` kind) never trains in ``add``: it
    reports :meth:`training_due` (at :data:`AUTO_EXACT_BELOW` templates, and after
    :data:`AUTO_RETRAIN_GROWTH`-fold growth) and :class:`VectorIndex` trains a copy in the
    background and hands it to :meth:`adopt`; below half the threshold it is exact again.
    """

    def __init__(self, dim: int, nlist: int, nprobe: int, *, adaptive: bool = False) -> None:
        self._dim, self._nlist, self._nprobe = dim, nlist, nprobe
        self.adaptive = adaptive
        self.train_threshold = AUTO_EXACT_BELOW if adaptive else IVF_POINTS_PER_CENTROID * nlist
        self._exact: _FlatBackend | None = _FlatBackend(dim)
        self._trained: _TrainedIvf | None = None

    @property
    def params(self) -> tuple[int, int]:
        """``(nlist, nprobe)`` in use (``auto`` changes them as the gallery grows)."""
        return self._nlist, self._nprobe

    @property
    def trained(self) -> bool:
        return self._trained is not None

    @property
    def size(self) -> int:
        return self._trained.size if self._trained is not None else self._exact_backend.size

    @property
    def _exact_backend(self) -> _FlatBackend:
        assert self._exact is not None  # exactly one of the two is set
        return self._exact

    def training_due(self) -> bool:
        """``auto``: whether the gallery has reached the size of a (new) training."""
        if not self.adaptive:
            return False
        if self._trained is None:
            return self.size >= self.train_threshold
        return self.size >= AUTO_RETRAIN_GROWTH * self._trained.trained_size

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> NDArray[np.int64] | None:
        if self._trained is not None:
            return self._trained.add(ids, vectors)
        exact = self._exact_backend
        exact.add(ids, vectors)
        if self.adaptive or exact.size < self.train_threshold:
            return ids
        all_ids, all_vectors = exact.contents()
        self.adopt(_train_ivf(self._dim, all_ids, all_vectors, *self.train_params(len(all_ids))))
        return None

    def contents(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Every id and vector held."""
        if self._trained is not None:
            return self._trained.store.contents()
        return self._exact_backend.contents()

    def train_params(self, n: int) -> tuple[int, int]:
        """``(nlist, nprobe)`` of a training on ``n`` vectors."""
        return auto_ivf_params(n) if self.adaptive else (self._nlist, self._nprobe)

    def adopt(self, trained: _TrainedIvf) -> None:
        """Serve from ``trained`` from now on (the caller has brought it up to date)."""
        self._trained, self._exact = trained, None
        self._nlist, self._nprobe = trained.nlist, trained.nprobe

    def fill(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Load the whole contents, training the centroids again when there are enough."""
        if len(ids) >= self.train_threshold:
            self.adopt(_train_ivf(self._dim, ids, vectors, *self.train_params(len(ids))))
        else:
            self._exact, self._trained = _FlatBackend(self._dim), None
            self._exact.add(ids, vectors)

    def set_nprobe(self, nprobe: int) -> None:
        if self._trained is not None:
            self._trained.set_nprobe(nprobe)
            self._nprobe = self._trained.nprobe
        else:
            self._nprobe = nprobe

    def remove(self, ids: NDArray[np.int64]) -> int:
        if self._trained is None:
            return self._exact_backend.remove(ids)
        removed = self._trained.remove(ids)
        if self.adaptive and self._trained.size < self.train_threshold // 2:
            self.fill(*self.contents())  # small again: back to exact search
        return removed

    def search(
        self, queries: NDArray[np.float32], k: int, scan: Searcher | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """``scan``: a GPU replica's search, which then does the scan (the CPU re-ranks)."""
        if self._trained is not None:
            return self._trained.search(queries, k, scan)
        if scan is not None:
            return scan(queries, k)
        return self._exact_backend.search(queries, k)

    def faiss_index(self) -> Any:
        if self._trained is not None:
            return self._trained.ivf
        return self._exact_backend.faiss_index()


def _with_capacity(array: NDArray[Any], needed: int, *, fill: int = 0) -> NDArray[Any]:
    """``array`` if it holds ``needed`` items, else a copy at least twice as long, the new items
    set to ``fill`` (growing geometrically keeps one-at-a-time appends amortised O(1))."""
    if len(array) >= needed:
        return array
    grown = np.full(max(needed, 2 * len(array), 1024), fill, array.dtype)
    grown[: len(array)] = array
    return grown


class _HnswBackend:
    """``IndexHNSWFlat`` (inner product) with tombstones and a position -> id table."""

    def __init__(self, dim: int, m: int, ef_search: int) -> None:
        self._dim, self._m, self.ef_search = dim, m, ef_search
        self._reset()

    def _reset(self) -> None:
        self._hnsw = faiss.IndexHNSWFlat(self._dim, self._m, faiss.METRIC_INNER_PRODUCT)
        # graph position -> external id (grown by doubling; valid below ntotal)
        self._pos_ids = np.empty(0, np.int64)
        self._id_pos: dict[int, int] = {}  # live external id -> graph position
        self._alive = np.zeros(0, np.uint8)  # bitmap over positions (faiss bit order)
        self._dead = 0

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        start = int(self._hnsw.ntotal)
        self._hnsw.add(vectors)
        total = int(self._hnsw.ntotal)
        # both tables grow by doubling: one template added to a big graph must not copy them
        self._pos_ids = _with_capacity(self._pos_ids, total)
        self._pos_ids[start:total] = ids
        for offset, id_ in enumerate(ids.tolist()):
            self._id_pos[id_] = start + offset
        self._alive = _with_capacity(self._alive, (total + 7) // 8)
        positions = np.arange(start, total)
        np.bitwise_or.at(self._alive, positions >> 3, (1 << (positions & 7)).astype(np.uint8))
        return None

    def remove(self, ids: NDArray[np.int64]) -> int:
        positions = [self._id_pos.pop(i) for i in ids.tolist() if i in self._id_pos]
        if not positions:
            return 0
        pos = np.asarray(positions, np.int64)
        storage = faiss.downcast_index(self._hnsw.storage)
        rows = faiss.rev_swig_ptr(storage.get_xb(), int(storage.ntotal) * self._dim)  # type: ignore[attr-defined]
        rows = rows.reshape(-1, self._dim)
        rows[pos] = 0.0  # erase the biometric vector itself; only graph links remain
        np.bitwise_and.at(self._alive, pos >> 3, (~(1 << (pos & 7))).astype(np.uint8))
        self._dead += len(positions)
        if self._dead >= HNSW_COMPACT_FRACTION * int(self._hnsw.ntotal):
            self._compact()
        return len(positions)

    def _compact(self) -> None:
        """Rebuild the graph from the live vectors, dropping every tombstone."""
        storage = faiss.downcast_index(self._hnsw.storage)
        rows = _flat_rows(storage)
        live = np.fromiter(self._id_pos.values(), np.int64, len(self._id_pos))
        live.sort()
        ids, vectors = self._pos_ids[live], rows[live]
        logger.info("compacting HNSW index: %d live of %d nodes", len(live), len(rows))
        self.fill(ids, vectors)

    def fill(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        self._reset()
        if len(ids):
            self.add(ids, vectors)

    def search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        total = int(self._hnsw.ntotal)
        ef = max(self.ef_search, k)
        if self._dead:
            selector = faiss.IDSelectorBitmap(total, faiss.swig_ptr(self._alive))
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=ef)  # type: ignore[attr-defined]
            scores, positions = self._hnsw.search(queries, k, params=params)
        else:
            self._hnsw.hnsw.efSearch = ef
            scores, positions = self._hnsw.search(queries, k)
        labels = np.where(positions >= 0, self._pos_ids[np.maximum(positions, 0)], -1)
        return scores, labels.astype(np.int64)

    def faiss_index(self) -> Any:
        return None


class VectorIndex:
    """Thread-safe id -> vector index searched by inner product (see the module docstring).

    ``add`` with an id already present replaces that entry; ids must be non-negative (``-1``
    marks empty result slots).
    """

    def __init__(
        self,
        dim: int,
        kind: IndexKind = "flat",
        *,
        use_gpu: bool | Literal["auto"] = "auto",
        nlist: int = 1024,
        nprobe: int = 16,
        hnsw_m: int = 32,
        ef_search: int = 128,
    ) -> None:
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer; got {dim!r}")
        if kind not in INDEX_KINDS:
            raise ValueError(f"index kind {kind!r} is not one of {INDEX_KINDS}")
        if use_gpu not in (True, False, "auto"):
            raise ValueError(f"use_gpu must be True, False or 'auto'; got {use_gpu!r}")
        for name, value in (
            ("nlist", nlist),
            ("nprobe", nprobe),
            ("hnsw_m", hnsw_m),
            ("ef_search", ef_search),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if kind == "ivf" and nprobe > nlist:
            raise ValueError(f"nprobe ({nprobe}) cannot exceed nlist ({nlist})")
        self.dim = dim
        self.kind: IndexKind = kind
        self._params = {"nlist": nlist, "nprobe": nprobe, "hnsw_m": hnsw_m, "ef_search": ef_search}
        self.on_gpu = self._decide_gpu(kind, use_gpu)
        self._lock = threading.RLock()
        self._ids: set[int] = set()
        self._backend = self._new_backend()
        self._gpu_resources: Any = _gpu_resources() if self.on_gpu else None
        self._gpu_index: Any = None  # replica of the backend's faiss index; None = stale
        # ``auto``'s background training: the thread, the changes made since its snapshot
        # (replayed onto its result), and a generation that a rebuild or a fall back to exact
        # search bumps, so that a training started before it is thrown away
        self._training: threading.Thread | None = None
        self._changes: list[tuple[NDArray[np.int64], NDArray[np.float32] | None]] = []
        self._generation = 0

    @staticmethod
    def _decide_gpu(kind: IndexKind, use_gpu: bool | Literal["auto"]) -> bool:
        if use_gpu is False:
            return False
        if use_gpu is True:
            if kind == "hnsw":
                raise GpuUnavailableError("use_gpu=True: faiss has no GPU HNSW; use flat or ivf")
            if not gpu_available():
                raise GpuUnavailableError(
                    "use_gpu=True but faiss has no GPU support or sees no device "
                    "(install the gpu extra with faiss-gpu, or use use_gpu='auto')"
                )
            return True
        return kind != "hnsw" and gpu_available()

    def _new_backend(self) -> _FlatBackend | _IvfBackend | _HnswBackend:
        p = self._params
        if self.kind == "flat":
            return _FlatBackend(self.dim)
        if self.kind in ("ivf", "auto"):
            return _IvfBackend(self.dim, p["nlist"], p["nprobe"], adaptive=self.kind == "auto")
        return _HnswBackend(self.dim, p["hnsw_m"], p["ef_search"])

    # ----------------------------------------------------------------- validation

    def _check_vectors(self, vectors: NDArray[np.float32], what: str) -> NDArray[np.float32]:
        arr = np.asarray(vectors)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"{what} must have shape (n, {self.dim}); got {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{what} must be real numbers; got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise ValueError(f"{what} contain NaN or infinite values")
        return arr

    @staticmethod
    def _check_ids(ids: NDArray[np.int64], n: int | None = None) -> NDArray[np.int64]:
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise ValueError(f"ids must be one-dimensional; got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"ids must be integers; got dtype {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.int64)
        if n is not None and len(arr) != n:
            raise ValueError(f"got {len(arr)} ids for {n} vectors; they must match")
        if arr.size and arr.min() < 0:
            raise ValueError(f"ids must be >= 0 (-1 marks empty slots); got {int(arr.min())}")
        return arr

    def _check_unique(self, ids: NDArray[np.int64]) -> None:
        uniq, counts = np.unique(ids, return_counts=True)
        if len(uniq) != len(ids):
            dupes = uniq[counts > 1][:5].tolist()
            raise ValueError(f"ids must be unique within one call; repeated: {dupes}")

    # ----------------------------------------------------------------- mutation

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Insert vectors under ``ids``; an id already present is replaced."""
        x = self._check_vectors(vectors, "vectors")
        id_arr = self._check_ids(ids, len(x))
        self._check_unique(id_arr)
        if not len(id_arr):
            return
        with self._lock:
            present = [i for i in id_arr.tolist() if i in self._ids]
            if present:
                self._backend.remove(np.asarray(present, np.int64))
                self._note_change(np.asarray(present, np.int64), None)
            labels = self._backend.add(id_arr, x)
            self._note_change(id_arr, x)
            self._ids.update(id_arr.tolist())
            if self._gpu_index is not None and labels is not None and not present:
                self._gpu_index.add_with_ids(x, labels)
            else:
                self._gpu_index = None
            self._start_training_if_due()

    def remove(self, ids: NDArray[np.int64]) -> int:
        """Remove ``ids`` (unknown ids are ignored); returns how many were removed."""
        id_arr = self._check_ids(ids)
        with self._lock:
            present = np.asarray(sorted({i for i in id_arr.tolist() if i in self._ids}), np.int64)
            if not len(present):
                return 0
            was_trained = self.trained
            removed = self._backend.remove(present)
            if removed != len(present):
                raise RuntimeError(f"index removed {removed} of {len(present)} present ids")
            self._note_change(present, None)
            if was_trained and not self.trained:
                self._generation += 1  # fell back to exact search: a training under way is moot
            self._ids.difference_update(present.tolist())
            self._gpu_index = None
            return removed

    def rebuild(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Replace the whole contents (startup from SQL, ``gaitid index rebuild``).

        IVF centroids are trained again on these vectors; HNSW gets a fresh graph.
        """
        x = self._check_vectors(vectors, "vectors")
        id_arr = self._check_ids(ids, len(x))
        self._check_unique(id_arr)
        with self._lock:
            if isinstance(self._backend, _FlatBackend):
                self._backend = _FlatBackend(self.dim)
                if len(id_arr):
                    self._backend.add(id_arr, x)
            else:
                self._backend.fill(id_arr, x)
            self._generation += 1  # a training under way started from older contents
            self._ids = set(id_arr.tolist())
            self._gpu_index = None
            self._start_training_if_due()

    # ----------------------------------------------------------------- auto: training

    def _note_change(self, ids: NDArray[np.int64], vectors: NDArray[np.float32] | None) -> None:
        """Record an add (``vectors``) or a removal (None) for the training under way."""
        if self._training is not None:
            self._changes.append((ids.copy(), None if vectors is None else vectors.copy()))

    def _start_training_if_due(self) -> None:
        """``auto``: train a new IVF index on a snapshot, off the lock (callers hold it).

        Searches keep using the current index meanwhile; the changes made in between are
        replayed onto the new one before it replaces the old, under the lock.
        """
        backend = self._backend
        if not isinstance(backend, _IvfBackend) or self._training is not None:
            return
        if not backend.training_due():
            return
        ids, vectors = backend.contents()
        self._changes = []
        self._training = threading.Thread(
            target=self._train,
            args=(backend, ids, vectors, self._generation),
            name="gaitid-index-training",
            daemon=True,
        )
        self._training.start()

    def _train(
        self,
        backend: _IvfBackend,
        ids: NDArray[np.int64],
        vectors: NDArray[np.float32],
        generation: int,
    ) -> None:
        try:
            trained = _train_ivf(self.dim, ids, vectors, *backend.train_params(len(ids)))
        except Exception:  # the current index keeps serving; the next rebuild tries again
            logger.exception("background IVF training on %d vectors failed", len(ids))
            with self._lock:
                self._training, self._changes = None, []
            return
        with self._lock:
            current = generation == self._generation and backend is self._backend
            if current:
                for changed_ids, changed_vectors in self._changes:
                    if changed_vectors is None:
                        trained.remove(changed_ids)
                    else:
                        trained.add(changed_ids, changed_vectors)
                backend.adopt(trained)
                self._gpu_index = None
            self._training, self._changes = None, []
            if current:
                self._start_training_if_due()

    def wait_for_training(self, timeout: float | None = None) -> bool:
        """Block until no background training is under way; False if ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._training
            if thread is None:
                return True
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
            if thread.is_alive():
                return False

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change the speed/recall trade-off of later searches without rebuilding.

        ``nprobe`` applies to IVF (lists probed, at most ``nlist``; under ``auto`` it holds
        until the next training chooses again), ``ef_search`` to HNSW (candidate list size;
        raised to ``k`` when smaller). Other kinds ignore them.
        """
        for name, value in (("nprobe", nprobe), ("ef_search", ef_search)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer; got {value!r}")
        if self.kind == "ivf" and nprobe is not None and nprobe > self._params["nlist"]:
            raise ValueError(f"nprobe ({nprobe}) cannot exceed nlist ({self._params['nlist']})")
        with self._lock:
            if nprobe is not None:
                self._params["nprobe"] = nprobe
                if isinstance(self._backend, _IvfBackend):
                    self._backend.set_nprobe(nprobe)
                if self._gpu_index is not None and isinstance(self._backend, _IvfBackend):
                    self._gpu_index.nprobe = self._backend.params[1]
            if ef_search is not None:
                self._params["ef_search"] = ef_search
                if isinstance(self._backend, _HnswBackend):
                    self._backend.ef_search = ef_search

    # ----------------------------------------------------------------- queries

    def search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top ``k`` by inner product: scores ``[Q, k]`` descending, ids ``[Q, k]``.

        Slots beyond what the index can fill hold id ``-1`` and score ``-inf``.
        """
        q = self._check_vectors(queries, "queries")
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        k = int(k)
        with self._lock:
            if not self._ids or not len(q):
                scores = np.full((len(q), k), -np.inf, np.float32)
                return scores, np.full((len(q), k), -1, np.int64)
            if self.on_gpu and self._backend.faiss_index() is not None:
                scores, labels = self._search_gpu(q, k)
            else:
                scores, labels = self._backend.search(q, k)
        labels = np.asarray(labels, np.int64)
        scores = np.where(labels >= 0, scores, -np.inf).astype(np.float32)
        return scores, labels

    def _search_gpu(
        self, q: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        if self._gpu_index is None:
            self._gpu_index = faiss.index_cpu_to_gpu(
                self._gpu_resources, 0, self._backend.faiss_index()
            )
            if isinstance(self._backend, _IvfBackend) and hasattr(self._gpu_index, "nprobe"):
                self._gpu_index.nprobe = self._backend.params[1]
        if isinstance(self._backend, _IvfBackend):  # the GPU scans, the CPU re-ranks
            return self._backend.search(q, k, self._gpu_index.search)
        scores, labels = self._gpu_index.search(q, k)
        return scores, labels

    def ids(self) -> NDArray[np.int64]:
        """All ids present, ascending."""
        with self._lock:
            return np.asarray(sorted(self._ids), np.int64)

    def __len__(self) -> int:
        with self._lock:
            return len(self._ids)

    def __contains__(self, id_: object) -> bool:
        with self._lock:
            return id_ in self._ids

    @property
    def trained(self) -> bool:
        """False only for an IVF index still answering exactly (too few vectors to train)."""
        with self._lock:
            return not isinstance(self._backend, _IvfBackend) or self._backend.trained

    @property
    def ivf_params(self) -> tuple[int, int] | None:
        """``(nlist, nprobe)`` of a trained IVF index (``ivf``, ``auto`` when large); else None."""
        with self._lock:
            if isinstance(self._backend, _IvfBackend) and self._backend.trained:
                return self._backend.params
            return None

    def __repr__(self) -> str:
        return (
            f"VectorIndex(dim={self.dim}, kind={self.kind!r}, size={len(self)}, gpu={self.on_gpu})"
        )
