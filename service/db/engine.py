"""Engine and session factories, one :class:`Database` per app (no module-level engine).

SQLite (the embedded default) is tuned for a multi-threaded server: WAL so readers never
wait for a writer, ``busy_timeout`` so writers queue instead of failing, foreign keys on, and
``secure_delete`` so erased templates are overwritten in the file rather than left in free
pages. Write transactions start with ``BEGIN IMMEDIATE``: a deferred transaction that reads
and then writes can hit ``SQLITE_BUSY`` on the lock upgrade, which no timeout resolves. Read
transactions stay deferred, so code that holds the index lock while reading (rebuild,
readiness) never waits for a writer that is itself waiting for that lock.

When the database cannot serve (PostgreSQL unreachable, SQLite locked past the busy timeout,
a read-only file, a full disk), :meth:`Database.session` raises the service's typed
:class:`~service.errors.StorageError` instead of the driver's error, so every caller's
failure becomes a 503 (507 for a full disk) with ``Retry-After``, and reports it to the
database's :class:`~service.db.outage.DatabaseCircuit`, which fails fast while PostgreSQL is
down and logs one warning per outage. PostgreSQL connections time out after
``connect_timeout_s``, so nothing piles up on connection attempts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from gaitid.service.db.failures import RETRY_AFTER_S, classify
from gaitid.service.db.outage import DatabaseCircuit
from gaitid.service.errors import DatabaseUnavailableError, StorageError, storage_error

logger = logging.getLogger(__name__)

_WRITE_OPTION = "gaitid_write"
#: How long a SQLite writer waits for another one's lock before it is refused (503).
SQLITE_BUSY_TIMEOUT_S = 30.0
#: How long a PostgreSQL connection attempt may take (libpq counts whole seconds, >= 2).
CONNECT_TIMEOUT_S = 3


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    connect_timeout_s: int = CONNECT_TIMEOUT_S,
    busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S,
) -> Engine:
    """Create the engine for ``url`` with the backend settings described above."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed, connect_args={"check_same_thread": False, "timeout": busy_timeout_s}
        )
        _configure_sqlite(engine, busy_timeout_ms=round(busy_timeout_s * 1000))
        return engine
    connect_args = (
        {"connect_timeout": connect_timeout_s} if parsed.get_backend_name() == "postgresql" else {}
    )
    return create_engine(
        parsed,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args=connect_args,
    )


def _configure_sqlite(engine: Engine, *, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own is always deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA secure_delete=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class Database:
    """An engine plus read and write session factories, and the circuit of its outages."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        connect_timeout_s: int = CONNECT_TIMEOUT_S,
        busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S,
        circuit: DatabaseCircuit | None = None,
    ) -> None:
        self.engine = make_engine(
            url,
            pool_size=pool_size,
            connect_timeout_s=connect_timeout_s,
            busy_timeout_s=busy_timeout_s,
        )
        self.circuit = circuit if circuit is not None else DatabaseCircuit()
        # the circuit's epoch when this thread's current work began (see _on_checkout)
        self._began = threading.local()
        event.listen(self.engine, "checkout", self._on_checkout)
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
        self._admit()
        factory = self._write if write else self._snapshot if snapshot else self._read
        session = factory()
        try:
            yield session
        except Exception as exc:
            _quietly(session.rollback)
            refusal = self._refusal(exc)
            if refusal is None:
                raise
            raise refusal from exc
        except BaseException:
            _quietly(session.rollback)
            raise
        finally:
            _quietly(session.close)

    def ping(self) -> None:
        """Run ``SELECT 1``; raises :class:`StorageError` when the database cannot serve."""
        self._admit()
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            refusal = self._refusal(exc)
            if refusal is None:
                raise
            raise refusal from exc

    def _admit(self) -> None:
        """Fail fast, without a connection attempt, while the circuit is open."""
        wait = self.circuit.admit()
        if wait is not None:
            raise DatabaseUnavailableError(
                "the database is unreachable; retry shortly",
                kind="unreachable",
                retry_after_s=self.circuit.retry_after_s(),
            )
        self._began.epoch = self.circuit.epoch()

    def _on_checkout(self, *_args: Any) -> None:
        """A connection made, or a pooled one that passed its pre-ping: the database answers
        (unless this work began before the current outage; see ``DatabaseCircuit``)."""
        self.circuit.succeeded(getattr(self._began, "epoch", None))

    def _refusal(self, exc: BaseException) -> StorageError | None:
        """The typed error for a database that cannot serve (reported to the circuit), or
        None when ``exc`` is another error (a bug or a constraint: the caller's business)."""
        failure = classify(exc)
        if failure is None:
            return None
        self.circuit.failed(failure)
        return storage_error(
            failure,
            self.circuit.retry_after_s()
            if failure.kind == "unreachable"
            else RETRY_AFTER_S[failure.kind],
        )

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
        try:
            with self.engine.connect() as conn:
                raw = conn.connection.dbapi_connection  # outside any transaction
                if raw is None:
                    return
                busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except Exception as exc:
            # the erasure is committed; its answer must not turn into an error now
            failure = classify(exc)
            if failure is None:
                raise
            self.circuit.failed(failure)
            return
        if busy:
            logger.warning("WAL checkpoint after an erasure was blocked by a reader; retried later")

    def dispose(self) -> None:
        self.engine.dispose()


def _quietly(step: Any) -> None:
    """Run a clean-up step (rollback, close) whose failure on a database that cannot serve
    adds nothing: the request's own error, or its result, stands."""
    try:
        step()
    except Exception as exc:
        if classify(exc) is None:
            raise
        logger.debug("clean-up on an unavailable database: %s", exc)
