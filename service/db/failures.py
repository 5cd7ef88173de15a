"""Which database errors mean "the database cannot serve now", and of what kind.

A request that meets an unreachable PostgreSQL, a SQLite file locked past its busy timeout,
a read-only file or a full disk has done nothing wrong: it gets a 503 (507 for a full disk)
with ``Retry-After``, never a 500. :func:`classify` tells those errors from bugs (an
``IntegrityError`` the code did not expect, a syntax error), which stay 500s. It reads the
driver's own error codes (SQLite's result code, PostgreSQL's SQLSTATE) rather than messages
where the driver gives them, and looks through SQLAlchemy's wrappers and exception chains
(an error raised while handling such a failure stands for that failure).

This module knows drivers, not HTTP: ``service.db.engine`` turns a :class:`DatabaseFailure`
into the service's typed errors, and ``service.errors`` maps those to statuses.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import exc as sa_exc

FailureKind = Literal["unreachable", "locked", "read_only", "full", "io"]

#: Every kind, in the order the metrics list them.
FAILURE_KINDS: tuple[FailureKind, ...] = ("unreachable", "locked", "read_only", "full", "io")

#: Seconds a client should wait before retrying, by kind ("unreachable" uses the circuit's
#: open time instead, see ``service.db.outage``). A read-only file or a full disk needs an
#: operator, so retrying every second would only add load.
RETRY_AFTER_S: dict[FailureKind, int] = {
    "unreachable": 2,
    "locked": 1,
    "read_only": 30,
    "full": 60,
    "io": 5,
}

# SQLite primary result codes (https://sqlite.org/rescode.html)
_SQLITE_KINDS: dict[int, FailureKind] = {
    5: "locked",  # SQLITE_BUSY: another connection holds the lock past busy_timeout
    6: "locked",  # SQLITE_LOCKED
    8: "read_only",  # SQLITE_READONLY
    10: "io",  # SQLITE_IOERR
    13: "full",  # SQLITE_FULL: database or disk is full
    14: "unreachable",  # SQLITE_CANTOPEN
    15: "locked",  # SQLITE_PROTOCOL: lock protocol race
}

# Older drivers without ``sqlite_errorcode``: the messages SQLite gives those codes.
_SQLITE_MESSAGES: tuple[tuple[str, FailureKind], ...] = (
    ("database is locked", "locked"),
    ("database table is locked", "locked"),
    ("readonly database", "read_only"),
    ("database or disk is full", "full"),
    ("disk i/o error", "io"),
    ("unable to open database file", "unreachable"),
)

# PostgreSQL SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_PG_STATES: dict[str, FailureKind] = {
    "57P01": "unreachable",  # admin_shutdown: the server is stopping
    "57P02": "unreachable",  # crash_shutdown
    "57P03": "unreachable",  # cannot_connect_now: starting up or shutting down
    "53300": "unreachable",  # too_many_connections: cannot get a session now
    "53100": "full",  # disk_full
    "53200": "full",  # out_of_memory
    "25006": "read_only",  # read_only_sql_transaction (a standby, or default read-only)
    "58030": "io",  # io_error
    "55P03": "locked",  # lock_not_available (lock_timeout)
}


@dataclass(frozen=True)
class DatabaseFailure:
    """A database error that is about the database's state, not about the request."""

    kind: FailureKind
    detail: str
    """The driver's message (for the log; it may name hosts, so never sent to clients)."""


def classify(exc: BaseException) -> DatabaseFailure | None:
    """The failure ``exc`` stands for, or None when it is not a database-state error."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        kind = _kind_of(current)
        if kind is not None:
            return DatabaseFailure(kind, _one_line(current))
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        if isinstance(current, sa_exc.DBAPIError) and isinstance(current.orig, BaseException):
            pending.append(current.orig)
        # the cause, and the error being handled: SQLite rolls back a transaction that hit a
        # full disk itself, so undoing a savepoint afterwards fails with "no such savepoint"
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return None


def _kind_of(exc: BaseException) -> FailureKind | None:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return "unreachable"  # SQLAlchemy saw the connection die (is_disconnect)
    if isinstance(exc, sa_exc.DisconnectionError):
        return "unreachable"
    if isinstance(exc, sa_exc.TimeoutError):
        return "unreachable"  # no pooled connection came free in time: it cannot serve now
    if isinstance(exc, sqlite3.Error):
        return _sqlite_kind(exc)
    if type(exc).__module__.startswith("psycopg"):
        return _psycopg_kind(exc)
    return None


def _sqlite_kind(exc: sqlite3.Error) -> FailureKind | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return _SQLITE_KINDS.get(code & 0xFF)
    message = str(exc).lower()
    for fragment, kind in _SQLITE_MESSAGES:
        if fragment in message:
            return kind
    return None


def _psycopg_kind(exc: BaseException) -> FailureKind | None:
    import psycopg  # only reached with a psycopg error in hand, so it is installed

    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        if state.startswith("08"):  # connection_exception and its subclasses
            return "unreachable"
        if state in _PG_STATES:
            return _PG_STATES[state]
        return None  # a server-side error about the statement: not an outage
    # no SQLSTATE: raised by the client library (refused, timed out, connection closed)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return "unreachable"
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"
