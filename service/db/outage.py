"""Outages of the database: a circuit that fails fast, and a log that stays quiet.

When the database cannot be reached, every request that needs it would otherwise open a
connection attempt of its own and wait for it to fail, and write a traceback. Instead:

- **One warning per outage.** The first failure that says the database is unreachable logs
  one warning; the first success afterwards logs one more, with how long it lasted and how
  many requests were refused. Other kinds (SQLite locked, read-only, full disk, I/O error)
  have no clear end, so each is warned about at most once per :data:`WARN_EVERY_S`, with
  how many occurred since the last warning.
- **A circuit.** After ``failures_to_open`` consecutive "unreachable" failures the circuit
  opens: for ``open_s`` seconds :meth:`DatabaseCircuit.admit` refuses at once, without a
  connection attempt. Then one caller at a time is let through as a probe (``probe_s`` at
  most, which covers a connect timeout); its failure opens the circuit again, a successful
  connection (:meth:`DatabaseCircuit.succeeded`, from the pool's checkout) closes it.

Thread-safe: the pool's threads, the request threads and the change follower all report
here. Counts are read by the metrics at scrape time (:meth:`DatabaseCircuit.stats`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gaitid.service.db.failures import FAILURE_KINDS, DatabaseFailure, FailureKind

logger = logging.getLogger(__name__)

#: Seconds between two warnings about the same non-outage kind (locked, read-only, ...).
WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class DatabaseStats:
    """What the metrics show about the database's availability."""

    up: bool
    outages: int
    refused: dict[FailureKind, int] = field(default_factory=dict)
    """Requests answered 503/507 because of the database, by failure kind."""


class DatabaseCircuit:
    """Outage bookkeeping and fail-fast gate of one :class:`~service.db.engine.Database`."""

    def __init__(
        self,
        *,
        failures_to_open: int = 3,
        open_s: float = 2.0,
        probe_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures_to_open < 1:
            raise ValueError(f"failures_to_open must be >= 1; got {failures_to_open}")
        if open_s <= 0 or probe_s <= 0:
            raise ValueError(f"open_s and probe_s must be > 0; got {open_s}, {probe_s}")
        self._failures_to_open = failures_to_open
        self._open_s = open_s
        self._probe_s = probe_s
        self._clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._last_failure = ""
        self._consecutive = 0
        self._open_until = 0.0
        self._probe_until = 0.0
        self._outages = 0
        self._refused: dict[FailureKind, int] = dict.fromkeys(FAILURE_KINDS, 0)
        self._refused_in_outage = 0
        self._last_warned: dict[FailureKind, float] = {}
        self._unwarned: dict[FailureKind, int] = dict.fromkeys(FAILURE_KINDS, 0)

    @property
    def down(self) -> bool:
        """True from the first "unreachable" failure until the next successful connection."""
        return self._down_since is not None

    def admit(self) -> float | None:
        """None to go ahead; else the seconds to wait (the circuit is open: fail fast)."""
        if self._open_until == 0.0:  # closed: the common case, no lock
            return None
        with self._lock:
            now = self._clock()
            if self._open_until == 0.0:
                return None
            if now < self._open_until:
                return self._open_until - now
            if now < self._probe_until:
                return self._open_s  # a probe is on its way; the others wait
            self._probe_until = now + self._probe_s
            return None  # this caller is the probe

    def retry_after_s(self) -> int:
        """Whole seconds after which a retry may find the circuit letting requests through."""
        with self._lock:
            left = max(self._open_until - self._clock(), 0.0)
        return max(1, math.ceil(left if left > 0 else self._open_s))

    def failed(self, failure: DatabaseFailure) -> None:
        """Record a failure (any thread); logs at the start of an outage only."""
        if failure.kind != "unreachable":
            self._warn_throttled(failure)
            return
        with self._lock:
            now = self._clock()
            self._consecutive += 1
            self._last_failure = failure.detail
            started = self._down_since is None
            if started:
                self._down_since = now
                self._outages += 1
                self._refused_in_outage = 0
            if self._consecutive >= self._failures_to_open:
                self._open_until = now + self._open_s
                self._probe_until = 0.0
        if started:
            logger.warning(
                "database unreachable (%s): requests that need it get 503 "
                "database_unavailable until it is back",
                failure.detail,
            )

    def epoch(self) -> int:
        """The number of outages so far: taken when work starts, and passed to
        :meth:`succeeded`, it tells a success that began before the current outage."""
        return self._outages

    def succeeded(self, epoch: int | None = None) -> None:
        """A connection was made or checked (any thread): close the circuit, end an outage.

        ``epoch``: :meth:`epoch` when the work that connected began. A connection checked
        just before the database went away, and reported just after the first failure, is
        not the database coming back; it is ignored (None: take it as current).
        """
        if self._down_since is None and self._consecutive == 0:  # the common case, no lock
            return
        with self._lock:
            if epoch is not None and epoch < self._outages:
                return
            down_since, self._down_since = self._down_since, None
            self._consecutive = 0
            self._open_until = 0.0
            self._probe_until = 0.0
            refused = self._refused_in_outage
            seconds = self._clock() - down_since if down_since is not None else 0.0
        if down_since is not None:
            logger.warning(
                "database reachable again after %.1f s unreachable; %d requests refused "
                "meanwhile (503)",
                seconds,
                refused,
            )

    def refused(self, kind: FailureKind) -> None:
        """A request was answered 503/507 because of the database (counted for the metrics
        and for the end-of-outage warning)."""
        with self._lock:
            self._refused[kind] += 1
            if self._down_since is not None:
                self._refused_in_outage += 1

    def stats(self) -> DatabaseStats:
        with self._lock:
            return DatabaseStats(
                up=self._down_since is None, outages=self._outages, refused=dict(self._refused)
            )

    def _warn_throttled(self, failure: DatabaseFailure) -> None:
        with self._lock:
            now = self._clock()
            last = self._last_warned.get(failure.kind)
            if last is not None and now - last < WARN_EVERY_S:
                self._unwarned[failure.kind] += 1
                return
            self._last_warned[failure.kind] = now
            since, self._unwarned[failure.kind] = self._unwarned[failure.kind], 0
        logger.warning(
            "database %s (%s): requests that need it get %s%s",
            failure.kind.replace("_", "-"),
            failure.detail,
            "507 storage_full" if failure.kind == "full" else "503 database_unavailable",
            f" ({since} more since the last warning)" if since else "",
        )
