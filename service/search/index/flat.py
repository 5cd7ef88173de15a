"""``flat``: exact search, ``IndexIDMap2(IndexFlatIP)``; O(N) per query. Removal compacts
the stored rows, so the vector bytes are gone at once."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from gaitid.service.search.index.backend import Searcher, Untrained, flat_rows


class FlatBackend(Untrained):
    """Exact search: ``IndexIDMap2(IndexFlatIP)`` (an :class:`IndexBackend`)."""

    def __init__(self, dim: int) -> None:
        self._dim = dim
        self._reset()

    def _reset(self) -> None:
        self._flat = faiss.IndexFlatIP(self._dim)
        self._index = faiss.IndexIDMap2(self._flat)

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> NDArray[np.int64]:
        self._index.add_with_ids(vectors, ids)
        return ids

    def remove(self, ids: NDArray[np.int64]) -> int:
        return int(self._index.remove_ids(ids))  # type: ignore[arg-type]  # swig accepts arrays

    def fill(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        self._reset()
        if len(ids):
            self.add(ids, vectors)

    def contents(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """All ``(ids, vectors)`` held, in storage order."""
        return faiss.vector_to_array(self._index.id_map).astype(np.int64), flat_rows(self._flat)

    def search(
        self, queries: NDArray[np.float32], k: int, scan: Searcher | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        scores, labels = (scan or self._index.search)(queries, k)
        return scores, labels

    def faiss_index(self) -> Any:
        return self._index

    def set_search_params(self, *, nprobe: int | None, ef_search: int | None) -> None:
        return None  # exact: nothing to trade
