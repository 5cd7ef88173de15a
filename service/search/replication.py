"""Follow the changes other processes commit, so every replica's index stays equal to SQL.

One background thread per app (:class:`ChangeFollower`) wakes up and calls
:meth:`GalleryIndexes.catch_up`, which replays the change log (``gaitid.service.search.changelog``)
past
the last applied position. It wakes up

- on ``NOTIFY`` (PostgreSQL, ``replication_listen``): a dedicated psycopg connection in
  autocommit mode LISTENs on :data:`service.search.changelog.CHANNEL`; a writer's NOTIFY
  arrives only once its transaction has committed, so another replica sees a change within
  milliseconds;
- every ``replication_poll_s`` seconds regardless, which catches up after a lost connection, a
  missed notification or with no LISTEN at all (SQLite, or a pooler that drops LISTEN).

A restarted process needs neither: it rebuilds its index from SQL and starts following from
the log position of that same snapshot. The thread also prunes log rows older than the
retention now and then (every replica may; deleting is idempotent).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from gaitid.service.db.engine import Database
from gaitid.service.db.models import utcnow
from gaitid.service.errors import StorageError
from gaitid.service.search import changelog
from gaitid.service.search.gallery_index import GalleryIndexes

logger = logging.getLogger(__name__)

#: Seconds between attempts to re-open a lost LISTEN connection (polling goes on meanwhile).
_RECONNECT_S = 5.0
#: Seconds between prunings of the change log.
_PRUNE_EVERY_S = 600.0
#: Longest wait for the thread when stopping.
_STOP_TIMEOUT_S = 10.0


def libpq_dsn(database_url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL (driver name removed)."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"LISTEN needs a PostgreSQL URL; got backend {url.get_backend_name()!r}")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class ChangeFollower:
    """Background catch-up of one app's indexes (see the module docstring)."""

    def __init__(
        self,
        indexes: GalleryIndexes,
        db: Database,
        *,
        poll_s: float,
        listen: bool,
        retention_s: float,
    ) -> None:
        if poll_s <= 0:
            raise ValueError(f"poll_s must be > 0; got {poll_s}")
        self._indexes = indexes
        self._db = db
        self._poll_s = poll_s
        self._listen = listen and db.backend == "postgresql"
        self._retention = timedelta(seconds=retention_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None  # the LISTEN connection (psycopg.Connection) while open
        self._next_connect = 0.0
        self._next_prune = time.monotonic() + _PRUNE_EVERY_S
        self._failing = False
        self._listen_lost = False
        self.last_caught_up: float | None = None
        """``time.monotonic()`` of the last successful catch-up."""

    @property
    def listening(self) -> bool:
        return self._conn is not None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the change follower is already started")
        self._thread = threading.Thread(
            target=self._run, name="gaitid-change-follower", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and wait for it (at most one wait interval)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_S)
            if self._thread.is_alive():
                logger.warning("change follower did not stop within %.0f s", _STOP_TIMEOUT_S)
        self._close()

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wait()
            if self._stop.is_set():
                break
            self._step()

    def _step(self) -> None:
        # Any failure is logged and retried on the next wake-up: the thread must outlive a
        # database restart, and readiness reports a replica that cannot catch up.
        try:
            applied = self._indexes.catch_up()
            self.last_caught_up = time.monotonic()
            if self._failing:
                logger.info("change log readable again; caught up")
                self._failing = False
            if applied:
                logger.debug("caught up with %d changes of other processes", applied)
            self._maybe_prune()
        except StorageError:
            # the database cannot serve: its circuit logs the outage once; retry quietly
            self._failing = True
        except SQLAlchemyError as exc:
            if not self._failing:
                logger.warning("cannot read the change log (will retry): %s", exc)
            self._failing = True
        except Exception:
            logger.exception("catching up with the change log failed (will retry)")
            self._failing = True

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY_S
        with self._db.session(write=True) as session:
            pruned = changelog.prune(session, utcnow() - self._retention)
            session.commit()
        if pruned:
            logger.info("pruned %d change-log rows older than %s", pruned, self._retention)

    # ------------------------------------------------------------------ waiting
    def _wait(self) -> None:
        """Return on a notification, or after ``poll_s`` seconds, or when stopping."""
        if self._listen and self._conn is None and time.monotonic() >= self._next_connect:
            self._connect()
        if self._conn is None:
            self._stop.wait(self._poll_s)
            return
        import psycopg

        try:
            for _ in self._conn.notifies(timeout=self._poll_s, stop_after=1):
                pass
        except psycopg.Error as exc:
            logger.warning(
                "LISTEN connection lost (polling until it is back): %s", " ".join(str(exc).split())
            )
            self._close()
            self._listen_lost = True
            self._next_connect = time.monotonic() + _RECONNECT_S

    def _connect(self) -> None:
        import psycopg

        try:
            conn = psycopg.connect(
                libpq_dsn(self._db.engine.url.render_as_string(hide_password=False)),
                autocommit=True,
                connect_timeout=5,
            )
            conn.execute(f"LISTEN {changelog.CHANNEL}")
        except psycopg.Error as exc:
            if not self._listen_lost:  # once per loss, not every retry of an outage
                logger.warning(
                    "cannot LISTEN for changes (polling instead, retrying): %s",
                    " ".join(str(exc).split()),
                )
            self._listen_lost = True
            self._next_connect = time.monotonic() + _RECONNECT_S
            return
        self._conn = conn
        if self._listen_lost:
            logger.info("listening for index changes again")
        else:
            logger.info("listening for index changes on %s", self._db.url_for_display)
        self._listen_lost = False

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # closing a broken connection; nothing left to do
                logger.debug("closing the LISTEN connection: %s", exc)
