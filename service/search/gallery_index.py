"""The search side of the galleries: one :class:`VectorIndex` per gallery, kept equal to SQL.

SQL is the source of truth. This module owns the rule that keeps the in-memory indexes equal
to it: every change is committed and applied to the index while holding one lock
(:meth:`GalleryIndexes.commit_add` / :meth:`GalleryIndexes.commit_remove`), and a rebuild
reads the database and replaces the indexes while holding the same lock. So the order of
index updates is the order of commits, and a rebuild can never interleave with a
half-applied change. The SQL statements themselves run (and flush) before the lock is taken,
so a transaction that waits on a database lock never holds the index lock; reads done under
the lock use non-locking read transactions.

Other processes on the same database. Each change is also written to the change log
(``gaitid.service.search.changelog``) in its own transaction. :meth:`GalleryIndexes.catch_up`
replays the
log past the last applied position (``applied_seq``), skipping this process's own rows
(applied at their commit). Under the lock and in one database snapshot it removes the ids of
``remove`` rows and adds those templates of ``add`` rows that still exist in that snapshot, so
the outcome does not depend on the order of the two. A rebuild reads the log position and the
templates in one snapshot, so replay resumes exactly where the rebuilt state ends.

Only templates of the current model (by model file sha256) are ever loaded: a template
embedded by another model lives in a different space and is never compared ("stale").

A search does not take the lock: an id that a concurrent delete has just committed may still
come back from the index for an instant, and the caller drops ids it cannot find in SQL.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Result, func, select
from sqlalchemy.orm import Session

from gaitid.service.db.engine import Database
from gaitid.service.db.models import Identity, Template
from gaitid.service.search import changelog
from gaitid.service.search.index import VectorIndex

logger = logging.getLogger(__name__)

_REBUILD_CHUNK = 10_000
#: Change-log rows read per query while catching up.
_CATCH_UP_CHUNK = 5_000


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
        #: This process in the change log: its own rows are applied at commit, not replayed.
        self.origin = uuid.uuid4().hex
        self._applied_seq = 0
        # a commit raised: it may have committed all the same, so replay own rows once too
        self._replay_own = False

    @property
    def applied_seq(self) -> int:
        """The change-log position the indexes reflect (see the module docstring)."""
        return self._applied_seq

    # ------------------------------------------------------------------ mutation under lock
    def commit_add(
        self,
        session: Session,
        gallery_id: int,
        ids: NDArray[np.int64],
        vectors: NDArray[np.float32],
    ) -> None:
        """Log, commit and index new templates of one gallery (see :meth:`_commit_and_apply`)."""
        self._commit_and_apply(
            session, "add", gallery_id, ids, lambda: self.add(gallery_id, ids, vectors)
        )

    def commit_remove(self, session: Session, gallery_id: int, ids: NDArray[np.int64]) -> None:
        """Log, commit and unindex erased templates of one gallery."""
        self._commit_and_apply(
            session, "remove", gallery_id, ids, lambda: self.remove(gallery_id, ids)
        )

    def _commit_and_apply(
        self,
        session: Session,
        op: changelog.Op,
        gallery_id: int,
        ids: NDArray[np.int64],
        apply: Callable[[], object],
    ) -> None:
        """Flush, log the change, then commit and run ``apply`` (the index change) under the lock.

        If the index change fails after the commit, the indexes are rebuilt from SQL before
        the error propagates, so they never stay behind the database.
        """
        session.flush()
        changelog.record(session, op, gallery_id, np.asarray(ids).tolist(), self.origin)
        with self._lock:
            try:
                session.commit()
            except Exception:
                self._replay_own = True
                raise
            try:
                apply()
            except Exception:
                logger.exception("index update failed after commit; rebuilding from SQL")
                self._rebuild_locked()
                raise

    def add(self, gallery_id: int, ids: NDArray[np.int64], vectors: NDArray[np.float32]) -> None:
        """Add to a gallery's index (an id already there is replaced)."""
        with self._lock:
            index = self._indexes.get(gallery_id)
            if index is None:
                index = self._indexes[gallery_id] = self._factory()
            index.add(ids, vectors)

    def remove(self, gallery_id: int, ids: NDArray[np.int64]) -> int:
        """Remove from a gallery's index (unknown ids are ignored)."""
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

    @contextmanager
    def _locked_snapshot(self) -> Iterator[Session]:
        """The lock, plus a snapshot session whose snapshot starts under the lock.

        The connection is checked out before the lock is taken: a thread holding the lock must
        never wait for the pool, whose connections may all be held by writers that are waiting
        for this lock. The snapshot itself starts with the first statement, under the lock, so
        no commit of this process falls between the snapshot and the indexes.
        """
        with self._db.session(snapshot=True) as session:
            session.connection()
            with self._lock:
                yield session

    def rebuild(self) -> dict[int, int]:
        """Replace every index with the current model's templates from SQL; sizes per gallery."""
        with self._locked_snapshot() as session:
            return self._rebuild_locked(session)

    def _rebuild_locked(self, session: Session | None = None) -> dict[int, int]:
        """Rebuild while holding the lock, reading in ``session`` (a snapshot) or a new one."""
        if session is None:
            with self._db.session(snapshot=True) as fresh_session:
                return self._rebuild_locked(fresh_session)
        ids: dict[int, list[int]] = defaultdict(list)
        blobs: dict[int, list[bytes]] = defaultdict(list)
        # the log position first: should the session not be a snapshot, changes committed
        # between the two reads are replayed once more, which adds and removes tolerate
        position = changelog.latest_seq(session)
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
        self._applied_seq = position
        sizes = {g: len(i) for g, i in fresh.items()}
        logger.info(
            "index rebuilt from SQL: %d templates in %d galleries (change log at %d)",
            sum(sizes.values()),
            len(sizes),
            position,
        )
        return sizes

    # ------------------------------------------------------------------ other processes
    def catch_up(self) -> int:
        """Apply changes other processes committed since :attr:`applied_seq`; how many."""
        with self._locked_snapshot() as session:
            return self._catch_up_locked(session)

    def _catch_up_locked(self, session: Session) -> int:
        """Replay the log in ``session``'s snapshot (or rebuild in it when rows were pruned)."""
        oldest = changelog.oldest_seq(session)
        if oldest is not None and oldest > self._applied_seq + 1:
            # rows this process never saw may have been pruned: only a rebuild is safe
            logger.warning(
                "change log starts at %d, this process is at %d: rebuilding from SQL",
                oldest,
                self._applied_seq,
            )
            self._rebuild_locked(session)
            return 0
        applied = 0
        while True:
            changes = changelog.since(session, self._applied_seq, _CATCH_UP_CHUNK)
            if not changes:
                self._replay_own = False
                return applied
            foreign = [c for c in changes if self._replay_own or c.origin != self.origin]
            try:
                self._replay(session, foreign)
            except Exception:
                logger.exception("replaying the change log failed; rebuilding from SQL")
                self._rebuild_locked(session)
                raise
            self._applied_seq = changes[-1].seq
            applied += len(foreign)
            if len(changes) < _CATCH_UP_CHUNK:
                self._replay_own = False
                if applied:
                    logger.debug("applied %d changes of other processes", applied)
                return applied

    def _replay(self, session: Session, changes: list[changelog.Change]) -> None:
        removed: dict[int, list[int]] = defaultdict(list)
        added: list[int] = []
        for change in changes:
            if change.op == "remove":
                removed[change.gallery_id].append(change.template_id)
            else:
                added.append(change.template_id)
        for gallery_id, template_ids in removed.items():
            self.remove(gallery_id, np.asarray(template_ids, np.int64))
        if not added:
            return
        # only templates that exist in this snapshot (a later erasure is already in it) and
        # belong to the loaded model (a replica on another model writes rows too)
        rows = session.execute(
            select(Identity.gallery_id, Template.id, Template.embedding)
            .join(Identity, Template.identity_id == Identity.id)
            .where(Template.id.in_(added), Template.model_sha256 == self._model_sha256)
        )
        grouped_ids: dict[int, list[int]] = defaultdict(list)
        grouped_vectors: dict[int, list[NDArray[np.float32]]] = defaultdict(list)
        for gallery_id, template_id, embedding in rows:
            grouped_ids[gallery_id].append(template_id)
            grouped_vectors[gallery_id].append(vector_from_bytes(embedding, self._dim))
        for gallery_id, template_ids in grouped_ids.items():
            self.add(
                gallery_id,
                np.asarray(template_ids, np.int64),
                np.stack(grouped_vectors[gallery_id]),
            )

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
        """``(db_count, index_count)`` after catching up, in one snapshot under the lock.

        Catching up first means a process that is merely a few milliseconds behind another
        one's commit is not reported as inconsistent; a vector lost behind SQL's back is.
        """
        with self._locked_snapshot() as session:
            self._catch_up_locked(session)
            return self.count_in_db(session), len(self)

    def check(self) -> Consistency:
        """Compare the ids of every gallery's index with SQL (caught up, under the lock)."""
        with self._locked_snapshot() as session:
            self._catch_up_locked(session)
            want: dict[int, set[int]] = defaultdict(set)
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
