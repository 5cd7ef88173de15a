"""The search side of the galleries: one :class:`VectorIndex` per gallery, kept equal to SQL.

SQL is the source of truth. This module owns the rule that keeps the in-memory indexes equal
to it: every change is committed and applied to the index while holding one lock
(:meth:`GalleryIndexes.commit_and_apply`), and a rebuild reads the database and replaces the
indexes while holding the same lock. So the order of index updates is the order of commits,
and a rebuild can never interleave with a half-applied change. The SQL statements themselves
run (and flush) before the lock is taken, so a transaction that waits on a database lock never
holds the index lock; reads done under the lock use non-locking read transactions.

Only templates of the current model (by model file sha256) are ever loaded: a template
embedded by another model lives in a different space and is never compared ("stale").

A search does not take the lock: an id that a concurrent delete has just committed may still
come back from the index for an instant, and the caller drops ids it cannot find in SQL.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Result, func, select
from sqlalchemy.orm import Session

from service.db.engine import Database
from service.db.models import Identity, Template
from service.index import VectorIndex

logger = logging.getLogger(__name__)

_REBUILD_CHUNK = 10_000


def vector_from_bytes(data: bytes, dim: int) -> NDArray[np.float32]:
    """A stored embedding (little-endian float32 bytes) as a ``(dim,)`` array."""
    vec = np.frombuffer(data, dtype="<f4")
    if vec.shape != (dim,):
        raise ValueError(f"stored embedding has {vec.size} values; expected {dim}")
    return vec.astype(np.float32)


def vector_to_bytes(vector: NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


@dataclass(frozen=True)
class Consistency:
    """Result of comparing the indexes with SQL."""

    db_templates: int
    index_templates: int
    missing_from_index: list[int] = field(default_factory=list)
    extra_in_index: list[int] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return not self.missing_from_index and not self.extra_in_index


class GalleryIndexes:
    """Per-gallery indexes of the current model's templates, plus the commit/apply lock."""

    def __init__(
        self,
        db: Database,
        model_sha256: str,
        dim: int,
        factory: Callable[[], VectorIndex],
    ) -> None:
        self._db = db
        self._model_sha256 = model_sha256
        self._dim = dim
        self._factory = factory
        self._lock = threading.RLock()
        self._indexes: dict[int, VectorIndex] = {}

    # ------------------------------------------------------------------ mutation under lock
    def commit_and_apply(self, session: Session, apply: Callable[[], object]) -> None:
        """Flush, then commit and run ``apply`` (the index change) under the lock.

        If the index change fails after the commit, the indexes are rebuilt from SQL before
        the error propagates, so they never stay behind the database.
        """
        session.flush()
        with self._lock:
            session.commit()
            try:
                apply()
            except Exception:
                logger.exception("index update failed after commit; rebuilding from SQL")
                self._rebuild_locked()
                raise

    def add(self, gallery_id: int, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Add to a gallery's index (call inside :meth:`commit_and_apply`)."""
        with self._lock:
            index = self._indexes.get(gallery_id)
            if index is None:
                index = self._indexes[gallery_id] = self._factory()
            index.add(ids, vectors)

    def remove(self, gallery_id: int, ids: NDArray[np.int64]) -> int:
        """Remove from a gallery's index (call inside :meth:`commit_and_apply`)."""
        with self._lock:
            index = self._indexes.get(gallery_id)
            return index.remove(ids) if index is not None else 0

    def drop_gallery(self, gallery_id: int) -> None:
        with self._lock:
            self._indexes.pop(gallery_id, None)

    # ------------------------------------------------------------------ queries
    def search(
        self, gallery_id: int, query: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Top ``k`` of one gallery for one query: scores and ids, empty slots removed."""
        index = self._indexes.get(gallery_id)
        if index is None or len(index) == 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        scores, ids = index.search(query.reshape(1, -1), min(k, len(index)))
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep]

    def gallery_size(self, gallery_id: int) -> int:
        index = self._indexes.get(gallery_id)
        return len(index) if index is not None else 0

    def __len__(self) -> int:
        return sum(len(index) for index in list(self._indexes.values()))

    # ------------------------------------------------------------------ SQL <-> index
    def _current_rows(self, session: Session) -> Result[int, int, bytes]:
        return session.execute(
            select(Identity.gallery_id, Template.id, Template.embedding)
            .join(Identity, Template.identity_id == Identity.id)
            .where(Template.model_sha256 == self._model_sha256)
            .order_by(Template.id)
            .execution_options(yield_per=_REBUILD_CHUNK)
        )

    def rebuild(self) -> dict[int, int]:
        """Replace every index with the current model's templates from SQL; sizes per gallery."""
        with self._lock:
            return self._rebuild_locked()

    def _rebuild_locked(self) -> dict[int, int]:
        ids: dict[int, list[int]] = defaultdict(list)
        blobs: dict[int, list[bytes]] = defaultdict(list)
        with self._db.session() as session:
            for gallery_id, template_id, embedding in self._current_rows(session):
                ids[gallery_id].append(template_id)
                blobs[gallery_id].append(embedding)
        fresh: dict[int, VectorIndex] = {}
        for gallery_id, template_ids in ids.items():
            data = b"".join(blobs.pop(gallery_id))
            vectors = np.frombuffer(data, dtype="<f4").astype(np.float32)
            if vectors.size != len(template_ids) * self._dim:
                raise ValueError(
                    f"gallery {gallery_id}: stored embeddings are not {self._dim}-d float32"
                )
            index = self._factory()
            index.rebuild(np.asarray(template_ids, np.int64), vectors.reshape(-1, self._dim))
            fresh[gallery_id] = index
        self._indexes = fresh
        sizes = {g: len(i) for g, i in fresh.items()}
        logger.info(
            "index rebuilt from SQL: %d templates in %d galleries", sum(sizes.values()), len(sizes)
        )
        return sizes

    def count_in_db(self, session: Session) -> int:
        """Templates of the current model in SQL."""
        return int(
            session.scalar(
                select(func.count())
                .select_from(Template)
                .where(Template.model_sha256 == self._model_sha256)
            )
            or 0
        )

    def counts(self) -> tuple[int, int]:
        """``(db_count, index_count)`` read together under the lock (no change in between)."""
        with self._lock, self._db.session() as session:
            return self.count_in_db(session), len(self)

    def check(self) -> Consistency:
        """Compare the ids of every gallery's index with SQL (under the lock)."""
        with self._lock:
            want: dict[int, set[int]] = defaultdict(set)
            with self._db.session() as session:
                rows = session.execute(
                    select(Identity.gallery_id, Template.id)
                    .join(Identity, Template.identity_id == Identity.id)
                    .where(Template.model_sha256 == self._model_sha256)
                )
                for gallery_id, template_id in rows:
                    want[gallery_id].add(template_id)
            missing: list[int] = []
            extra: list[int] = []
            for gallery_id in set(want) | set(self._indexes):
                have = (
                    set(self._indexes[gallery_id].ids().tolist())
                    if gallery_id in self._indexes
                    else set()
                )
                missing.extend(sorted(want[gallery_id] - have))
                extra.extend(sorted(have - want[gallery_id]))
            return Consistency(
                db_templates=sum(len(s) for s in want.values()),
                index_templates=len(self),
                missing_from_index=sorted(missing),
                extra_in_index=sorted(extra),
            )
