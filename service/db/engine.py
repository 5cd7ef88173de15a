"""Engine and session factories, one :class:`Database` per app (no module-level engine).

SQLite (the embedded default) is tuned for a multi-threaded server: WAL so readers never
wait for a writer, ``busy_timeout`` so writers queue instead of failing, foreign keys on, and
``secure_delete`` so erased templates are overwritten in the file rather than left in free
pages. Write transactions start with ``BEGIN IMMEDIATE``: a deferred transaction that reads
and then writes can hit ``SQLITE_BUSY`` on the lock upgrade, which no timeout resolves. Read
transactions stay deferred, so code that holds the index lock while reading (rebuild,
readiness) never waits for a writer that is itself waiting for that lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

_WRITE_OPTION = "gaitid_write"
_SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create the engine for ``url`` with the backend settings described above."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is always deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """An engine plus read and write session factories."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.engine = make_engine(url, pool_size=pool_size)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )
        # One snapshot for every statement of a transaction. PostgreSQL's default (READ
        # COMMITTED) takes a new snapshot per statement; SQLite's deferred read transaction in
        # WAL mode already keeps the snapshot of its first read.
        snapshot_engine = (
            self.engine.execution_options(isolation_level="REPEATABLE READ")
            if self.backend == "postgresql"
            else self.engine
        )
        self._snapshot = sessionmaker(snapshot_engine, expire_on_commit=False)

    @property
    def url_for_display(self) -> str:
        """The URL with any password masked (safe for logs and error messages)."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def backend(self) -> str:
        return self.engine.url.get_backend_name()

    @contextmanager
    def session(self, *, write: bool = False, snapshot: bool = False) -> Iterator[Session]:
        """A session that rolls back on error and always closes.

        ``snapshot`` (read only): every statement sees the same committed state, so a log
        position and the rows it describes can be read together
        (``gaitid.service.search.changelog``).
        """
        if write and snapshot:
            raise ValueError("a session is either write=True or snapshot=True, not both")
        factory = self._write if write else self._snapshot if snapshot else self._read
        session = factory()
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def ping(self) -> None:
        """Run ``SELECT 1``; raises the driver's error when the database is unreachable."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def flush_erasures(self) -> None:
        """After an erasure on SQLite, copy the WAL into the database and truncate it.

        With ``secure_delete`` the database file's freed pages are zeroed, but the WAL still
        holds the erased rows' old pages until a checkpoint: without this, an erased name
        could be read from ``gaitid.db-wal`` long after its 204. Best effort: a checkpoint
        that a concurrent reader blocks leaves the WAL to the next one (logged). PostgreSQL
        needs nothing here.
        """
        if self.backend != "sqlite":
            return
        with self.engine.connect() as conn:
            raw = conn.connection.dbapi_connection  # outside any transaction
            if raw is None:
                return
            busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            logger.warning("WAL checkpoint after an erasure was blocked by a reader; retried later")

    def dispose(self) -> None:
        self.engine.dispose()
