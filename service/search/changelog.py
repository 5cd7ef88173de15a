"""The change log of the searchable set: written with each change, replayed by other processes.

Several service processes on one database each hold their own in-memory indexes. Every
enrolment or erasure therefore also writes its template ids to ``index_changes`` in the same
transaction, so the log holds exactly the committed changes; the other processes replay what
they have not applied yet (``GalleryIndexes.catch_up``, driven by
``gaitid.service.search.replication``).

Ordering. A reader remembers the last ``seq`` it applied and asks for larger ones, so ``seq``
must grow in commit order: otherwise a transaction holding a smaller number could commit
after a reader moved past it, and that change would be missed for ever. PostgreSQL hands out
sequence values at insert time, not at commit, so writers take one transaction-scoped
advisory lock immediately before inserting their rows and keep it until the commit; rows of
different transactions then commit in ``seq`` order. It is the last lock a writer takes, so a
holder never waits for another database lock and the lock cannot take part in a deadlock.
SQLite write transactions exclude each other already (``BEGIN IMMEDIATE``).

Wake-up. On PostgreSQL the writer also sends ``NOTIFY`` on :data:`CHANNEL` inside the same
transaction; PostgreSQL delivers it only when the transaction commits.

Retention. :func:`prune` removes rows older than the retention but always keeps the newest,
so a reader can tell that rows it never saw were pruned (:func:`oldest_seq` beyond its
position) and rebuild instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from gaitid.service.db.models import IndexChange, utcnow

#: LISTEN/NOTIFY channel of committed index changes (PostgreSQL).
CHANNEL = "gaitid_index_changes"
#: Key of the advisory lock that orders change-log writers ("gaitid" + 1; any fixed bigint).
ADVISORY_LOCK_KEY = 0x6761697469640001

Op = Literal["add", "remove"]
OPS: tuple[Op, ...] = ("add", "remove")


@dataclass(frozen=True)
class Change:
    """One row of the log."""

    seq: int
    op: Op
    gallery_id: int
    template_id: int
    origin: str


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def record(
    session: Session, op: Op, gallery_id: int, template_ids: Sequence[int], origin: str
) -> None:
    """Add the change to the session's transaction (call it last, right before the commit).

    On PostgreSQL this takes the ordering lock (see the module docstring) and queues the
    NOTIFY; both end with the transaction.
    """
    if op not in OPS:
        raise ValueError(f"change op {op!r} is not one of {OPS}")
    if not template_ids:
        return
    postgresql = _is_postgresql(session)
    if postgresql:
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    now = utcnow()
    session.execute(
        insert(IndexChange),
        [
            {
                "op": op,
                "gallery_id": gallery_id,
                "template_id": int(template_id),
                "origin": origin,
                "at": now,
            }
            for template_id in template_ids
        ],
    )
    if postgresql:
        notify = text("SELECT pg_notify(:channel, :origin)")
        session.execute(notify, {"channel": CHANNEL, "origin": origin})


def latest_seq(session: Session) -> int:
    """The newest committed ``seq`` (0 when the log is empty)."""
    return int(session.scalar(select(func.max(IndexChange.seq))) or 0)


def oldest_seq(session: Session) -> int | None:
    """The oldest ``seq`` still in the log, or None when it is empty."""
    value = session.scalar(select(func.min(IndexChange.seq)))
    return None if value is None else int(value)


def since(session: Session, after: int, limit: int) -> list[Change]:
    """Up to ``limit`` changes with ``seq > after``, oldest first."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1; got {limit}")
    rows = session.execute(
        select(
            IndexChange.seq,
            IndexChange.op,
            IndexChange.gallery_id,
            IndexChange.template_id,
            IndexChange.origin,
        )
        .where(IndexChange.seq > after)
        .order_by(IndexChange.seq)
        .limit(limit)
    )
    changes = []
    for seq, op, gallery_id, template_id, origin in rows:
        if op not in OPS:
            raise ValueError(f"index_changes row {seq} has op {op!r}; expected one of {OPS}")
        changes.append(Change(int(seq), op, int(gallery_id), int(template_id), origin))
    return changes


def prune(session: Session, older_than: datetime) -> int:
    """Delete rows written before ``older_than``, except the newest; returns how many went."""
    newest = select(func.max(IndexChange.seq)).scalar_subquery()
    result = session.execute(
        delete(IndexChange).where(IndexChange.at < older_than, IndexChange.seq < newest)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
