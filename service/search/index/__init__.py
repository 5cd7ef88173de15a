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

Each kind is one module behind one interface (``backend.IndexBackend``): ``flat.py``,
``ivf.py`` (``ivf`` and ``auto``), ``hnsw.py``; :class:`VectorIndex` holds the lock, the ids,
the GPU replica and ``auto``'s background training, and never asks which kind it holds.

Scores of empty result slots (``k`` larger than the index, or IVF probing too few lists) are
``-inf`` with id ``-1``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any, Literal

import faiss
import numpy as np
from numpy.typing import NDArray

from gaitid.errors import GaitidError
from gaitid.service.search.index.backend import IndexBackend, Searcher
from gaitid.service.search.index.flat import FlatBackend
from gaitid.service.search.index.hnsw import HNSW_COMPACT_FRACTION, HnswBackend
from gaitid.service.search.index.ivf import (
    AUTO_EXACT_BELOW,
    AUTO_LISTS_PER_ROOT,
    AUTO_MIN_PROBES,
    AUTO_PROBED_FRACTION,
    AUTO_RETRAIN_GROWTH,
    IVF_POINTS_PER_CENTROID,
    IVF_RERANK_FACTOR,
    IVF_TRAIN_POINTS_PER_LIST,
    SLOT_BLOCK_ROWS,
    IvfBackend,
    auto_ivf_params,
)

__all__ = [
    "AUTO_EXACT_BELOW",
    "AUTO_LISTS_PER_ROOT",
    "AUTO_MIN_PROBES",
    "AUTO_PROBED_FRACTION",
    "AUTO_RETRAIN_GROWTH",
    "HNSW_COMPACT_FRACTION",
    "INDEX_KINDS",
    "IVF_POINTS_PER_CENTROID",
    "IVF_RERANK_FACTOR",
    "IVF_TRAIN_POINTS_PER_LIST",
    "SLOT_BLOCK_ROWS",
    "GpuUnavailableError",
    "IndexBackend",
    "IndexKind",
    "Searcher",
    "VectorIndex",
    "auto_ivf_params",
    "gpu_available",
]

logger = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]
INDEX_KINDS: tuple[IndexKind, ...] = ("auto", "flat", "ivf", "hnsw")


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
        self._backend: IndexBackend = self._new_backend()
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

    def _new_backend(self) -> IndexBackend:
        p = self._params
        if self.kind == "flat":
            return FlatBackend(self.dim)
        if self.kind in ("ivf", "auto"):
            return IvfBackend(self.dim, p["nlist"], p["nprobe"], adaptive=self.kind == "auto")
        return HnswBackend(self.dim, p["hnsw_m"], p["ef_search"])

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
        if self._training is not None or not backend.training_due():
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
        backend: IndexBackend,
        ids: NDArray[np.int64],
        vectors: NDArray[np.float32],
        generation: int,
    ) -> None:
        try:
            trained = backend.train(ids, vectors)
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
            if ef_search is not None:
                self._params["ef_search"] = ef_search
            self._backend.set_search_params(nprobe=nprobe, ef_search=ef_search)
            self._sync_gpu_nprobe()

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
            self._sync_gpu_nprobe()
        return self._backend.search(q, k, self._gpu_index.search)  # IVF re-ranks on the CPU

    def _sync_gpu_nprobe(self) -> None:
        """A GPU replica of a trained IVF index probes as many lists as the CPU one."""
        params = self._backend.ivf_params
        if (
            self._gpu_index is not None
            and params is not None
            and hasattr(self._gpu_index, "nprobe")
        ):
            self._gpu_index.nprobe = params[1]

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
            return self._backend.trained

    @property
    def ivf_params(self) -> tuple[int, int] | None:
        """``(nlist, nprobe)`` of a trained IVF index (``ivf``, ``auto`` when large); else None."""
        with self._lock:
            return self._backend.ivf_params

    def __repr__(self) -> str:
        return (
            f"VectorIndex(dim={self.dim}, kind={self.kind!r}, size={len(self)}, gpu={self.on_gpu})"
        )
