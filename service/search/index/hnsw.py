"""``hnsw``: ``IndexHNSWFlat`` (inner product) with tombstones and a position -> id table
(see the package docstring: removal erases the vector at once and hides the node; the graph
is rebuilt when tombstones reach :data:`HNSW_COMPACT_FRACTION`)."""

from __future__ import annotations

import logging
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from gaitid.service.search.index.backend import Searcher, Untrained, flat_rows, with_capacity

logger = logging.getLogger(__name__)

#: Fraction of tombstoned HNSW nodes that triggers a rebuild of the graph.
HNSW_COMPACT_FRACTION = 0.1


class HnswBackend(Untrained):
    """``IndexHNSWFlat`` (inner product) with tombstones and a position -> id table."""

    def __init__(self, dim: int, m: int, ef_search: int) -> None:
        self._dim, self._m, self.ef_search = dim, m, ef_search
        self._reset()

    @property
    def size(self) -> int:
        return len(self._id_pos)

    def _reset(self) -> None:
        self._hnsw = faiss.IndexHNSWFlat(self._dim, self._m, faiss.METRIC_INNER_PRODUCT)
        # graph position -> external id (grown by doubling; valid below ntotal)
        self._pos_ids = np.empty(0, np.int64)
        self._id_pos: dict[int, int] = {}  # live external id -> graph position
        self._alive = np.zeros(0, np.uint8)  # bitmap over positions (faiss bit order)
        self._dead = 0

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Append to the graph (no GPU replica follows: there is no GPU HNSW)."""
        start = int(self._hnsw.ntotal)
        self._hnsw.add(vectors)
        total = int(self._hnsw.ntotal)
        # both tables grow by doubling: one template added to a big graph must not copy them
        self._pos_ids = with_capacity(self._pos_ids, total)
        self._pos_ids[start:total] = ids
        for offset, id_ in enumerate(ids.tolist()):
            self._id_pos[id_] = start + offset
        self._alive = with_capacity(self._alive, (total + 7) // 8)
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

    def contents(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The live ``(ids, vectors)``, in graph order."""
        rows = flat_rows(faiss.downcast_index(self._hnsw.storage))
        live = np.fromiter(self._id_pos.values(), np.int64, len(self._id_pos))
        live.sort()
        return self._pos_ids[live], rows[live]

    def _compact(self) -> None:
        """Rebuild the graph from the live vectors, dropping every tombstone."""
        ids, vectors = self.contents()
        total = int(self._hnsw.ntotal)
        logger.info("compacting HNSW index: %d live of %d nodes", len(ids), total)
        self.fill(ids, vectors)

    def fill(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        self._reset()
        if len(ids):
            self.add(ids, vectors)

    def search(
        self, queries: NDArray[np.float32], k: int, scan: Searcher | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """``scan`` is never given: HNSW has no GPU replica (``faiss_index`` is None)."""
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

    def set_search_params(self, *, nprobe: int | None, ef_search: int | None) -> None:
        if ef_search is not None:
            self.ef_search = ef_search
