"""The interface every index kind implements (:class:`IndexBackend`), and helpers they share.

:class:`~gaitid.service.search.index.VectorIndex` validates arguments, tracks the ids, holds
the lock and keeps the GPU replica; a backend only stores and searches. One file per kind:
``flat.py``, ``ivf.py`` (``ivf`` and ``auto``), ``hnsw.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import faiss
import numpy as np
from numpy.typing import NDArray

#: ``(queries, k) -> (scores, labels)``: a faiss index's search, such as a GPU replica's.
Searcher = Callable[[NDArray[np.float32], int], tuple[NDArray[np.float32], NDArray[np.int64]]]


class Replayable(Protocol):
    """A freshly trained index that the changes made while it trained are replayed onto."""

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> Any: ...

    def remove(self, ids: NDArray[np.int64]) -> int: ...


@runtime_checkable
class IndexBackend(Protocol):
    """What :class:`VectorIndex` asks of an index kind (ids are new on ``add``: replacing is
    the caller's remove-then-add)."""

    @property
    def size(self) -> int:
        """Vectors held."""
        ...

    @property
    def trained(self) -> bool:
        """False only while a kind that needs training still answers exactly."""
        ...

    @property
    def ivf_params(self) -> tuple[int, int] | None:
        """``(nlist, nprobe)`` of a trained IVF index; None for every other state."""
        ...

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> NDArray[np.int64] | None:
        """Store new vectors; return the labels they were appended under in
        :meth:`faiss_index`'s object (a GPU replica appends the same), or None when the
        replica must be copied again."""
        ...

    def remove(self, ids: NDArray[np.int64]) -> int:
        """Remove ``ids`` (unknown ones ignored) and erase their vectors; how many went."""
        ...

    def fill(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Replace the whole contents (IVF trains again, HNSW builds a fresh graph)."""
        ...

    def contents(self) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Every ``(ids, vectors)`` held."""
        ...

    def search(
        self, queries: NDArray[np.float32], k: int, scan: Searcher | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top ``k`` by inner product; ``scan``: a GPU replica's search of
        :meth:`faiss_index`, used in place of the CPU's (IVF still re-ranks on the CPU)."""
        ...

    def faiss_index(self) -> Any:
        """The faiss object a GPU replica is cloned from; None when there is no GPU version."""
        ...

    def set_search_params(self, *, nprobe: int | None, ef_search: int | None) -> None:
        """Speed/recall knobs for later searches; a kind ignores the ones it has not."""
        ...

    def training_due(self) -> bool:
        """Whether a new index should be trained in the background now (``auto`` only)."""
        ...

    def train(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> Replayable:
        """A new index trained on a snapshot, off the lock (asked only after
        :meth:`training_due`)."""
        ...

    def adopt(self, trained: Replayable) -> None:
        """Serve from ``trained`` from now on (the caller has replayed what changed)."""
        ...


class Untrained:
    """The training side of :class:`IndexBackend` for the kinds that are never trained in
    the background (flat, HNSW)."""

    @property
    def trained(self) -> bool:
        return True

    @property
    def ivf_params(self) -> tuple[int, int] | None:
        return None

    def training_due(self) -> bool:
        return False

    def train(self, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> Replayable:
        raise NotImplementedError(f"{type(self).__name__} is never trained")

    def adopt(self, trained: Replayable) -> None:
        raise NotImplementedError(f"{type(self).__name__} is never trained")


def flat_rows(flat: Any) -> NDArray[np.float32]:
    """Copy of the vectors stored in a faiss ``IndexFlat`` as ``[ntotal, d]``."""
    n, d = int(flat.ntotal), int(flat.d)
    if n == 0:
        return np.empty((0, d), np.float32)
    return faiss.rev_swig_ptr(flat.get_xb(), n * d).reshape(n, d).copy()


def with_capacity(array: NDArray[Any], needed: int, *, fill: int = 0) -> NDArray[Any]:
    """``array`` if it holds ``needed`` items, else a copy at least twice as long, the new items
    set to ``fill`` (growing geometrically keeps one-at-a-time appends amortised O(1))."""
    if len(array) >= needed:
        return array
    grown = np.full(max(needed, 2 * len(array), 1024), fill, array.dtype)
    grown[: len(array)] = array
    return grown
