"""``ivf`` and ``auto``: inverted lists over 8-bit codes whose candidates are re-ranked by
exact inner products (see the package docstring); exact flat search until there is enough to
train on, and for ``auto`` below :data:`AUTO_EXACT_BELOW` templates."""

from __future__ import annotations

import logging
import math
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from gaitid.service.search.index.backend import Replayable, Searcher, with_capacity
from gaitid.service.search.index.flat import FlatBackend

logger = logging.getLogger(__name__)

#: FAISS asks for at least this many training points per IVF centroid.
IVF_POINTS_PER_CENTROID = 39
#: k-means of the IVF lists runs on at most this many sampled vectors per list.
IVF_TRAIN_POINTS_PER_LIST = 64
#: Rows per block of the exact vectors kept beside IVF's 8-bit codes (64 MB at 256-d).
SLOT_BLOCK_ROWS = 65_536
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


class SlotStore:
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
        self.slot_ids = with_capacity(self.slot_ids, self._used, fill=-1)
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


class TrainedIvf:
    """IVF over 8-bit codes (``IndexIVFScalarQuantizer``) whose candidates are re-ranked exactly.

    Built whole by :func:`train_ivf` (new objects, so no lock is needed while it trains), then
    adopted by an :class:`IvfBackend`. The codes are a quarter of the vectors' bytes, which is
    what a probe's scan reads; the exact vectors stay in a :class:`SlotStore` beside them, so
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
        self.store = SlotStore(dim)
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


def train_ivf(
    dim: int, ids: NDArray[np.int64], vectors: NDArray[np.float32], nlist: int, nprobe: int
) -> TrainedIvf:
    """k-means the lists on ``vectors`` and file them under ``ids`` (new objects: no lock)."""
    trained = TrainedIvf(dim, nlist, nprobe, vectors)
    trained.add(ids, vectors)
    logger.info("IVF index trained: %d lists (%d probed) on %d vectors", nlist, nprobe, len(ids))
    return trained


class IvfBackend:
    """IVF over 8-bit codes with exact re-ranking (:class:`TrainedIvf`) once trained; exact
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
        self._exact: FlatBackend | None = FlatBackend(dim)
        self._trained: TrainedIvf | None = None

    @property
    def params(self) -> tuple[int, int]:
        """``(nlist, nprobe)`` in use (``auto`` changes them as the gallery grows)."""
        return self._nlist, self._nprobe

    @property
    def ivf_params(self) -> tuple[int, int] | None:
        return self.params if self._trained is not None else None

    @property
    def trained(self) -> bool:
        return self._trained is not None

    @property
    def size(self) -> int:
        return self._trained.size if self._trained is not None else self._exact_backend.size

    @property
    def _exact_backend(self) -> FlatBackend:
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
        self.adopt(self.train(all_ids, all_vectors))
        return None

    def contents(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Every id and vector held."""
        if self._trained is not None:
            return self._trained.store.contents()
        return self._exact_backend.contents()

    def train(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> TrainedIvf:
        """A new IVF index over a snapshot, sized for it (new objects: no lock needed)."""
        return train_ivf(self._dim, ids, vectors, *self.train_params(len(ids)))

    def train_params(self, n: int) -> tuple[int, int]:
        """``(nlist, nprobe)`` of a training on ``n`` vectors."""
        return auto_ivf_params(n) if self.adaptive else (self._nlist, self._nprobe)

    def adopt(self, trained: Replayable) -> None:
        """Serve from ``trained`` from now on (the caller has brought it up to date)."""
        assert isinstance(trained, TrainedIvf)  # what train() made
        self._trained, self._exact = trained, None
        self._nlist, self._nprobe = trained.nlist, trained.nprobe

    def fill(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Load the whole contents, training the centroids again when there are enough."""
        if len(ids) >= self.train_threshold:
            self.adopt(self.train(ids, vectors))
        else:
            self._exact, self._trained = FlatBackend(self._dim), None
            self._exact.add(ids, vectors)

    def set_search_params(self, *, nprobe: int | None, ef_search: int | None) -> None:
        if nprobe is not None:
            self.set_nprobe(nprobe)

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
