"""The database-outage probe of issue 31, shared by its test and ``bench/soak.py``.

Concurrent enrol workers run against a live ``gaitid serve`` while the database is stopped
(``pg_ctl stop -m fast``) and started again. Each worker records every answer: status, error
code, ``Retry-After``, latency, or the transport error of a connection dropped without one.
Afterwards :func:`verify_after` checks that every acknowledged enrolment (201) is present and
that the index equals SQL.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class OutageRun:
    """What the clients saw during one outage probe."""

    statuses: Counter[str] = field(default_factory=Counter)
    """By HTTP status, plus ``dropped`` for connections closed without an answer."""
    dropped_errors: Counter[str] = field(default_factory=Counter)
    """Transport errors by class name (httpx ReadError, RemoteProtocolError, ...)."""
    bad_refusals: list[str] = field(default_factory=list)
    """503/507 answers without the JSON code or ``Retry-After`` they should carry."""
    refusal_seconds: list[float] = field(default_factory=list)
    acknowledged: dict[int, int] = field(default_factory=dict)
    """identity id -> template id of every enrolment answered 201."""
    timeline: dict[str, float] = field(default_factory=dict)
    """Seconds since the start at which the database was stopped, started, answered again."""
    missing: list[int] = field(default_factory=list)
    index_equals_sql: bool | None = None

    @property
    def server_errors_other_than_503(self) -> int:
        return sum(n for s, n in self.statuses.items() if s.startswith("5") and s != "503")

    def summary(self) -> dict[str, Any]:
        latencies = sorted(self.refusal_seconds)

        def quantile(q: float) -> float | None:
            if not latencies:
                return None
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 4)

        return {
            "statuses": dict(sorted(self.statuses.items())),
            "dropped_without_answer": self.statuses.get("dropped", 0),
            "dropped_errors": dict(self.dropped_errors),
            "5xx_other_than_503": self.server_errors_other_than_503,
            "refusals_without_code_or_retry_after": len(self.bad_refusals),
            "refusal_latency_p50_s": quantile(0.5),
            "refusal_latency_p99_s": quantile(0.99),
            "acknowledged_enrolments": len(self.acknowledged),
            "acknowledged_missing_afterwards": len(self.missing),
            "index_equals_sql": self.index_equals_sql,
            "timeline_s": {k: round(v, 2) for k, v in self.timeline.items()},
        }


async def enrol_through_outage(
    url: str,
    key: str,
    walks: list[bytes],
    *,
    stop: Callable[[], None],
    start: Callable[[], None],
    workers: int = 4,
    load_s: float = 40.0,
    stop_at_s: float = 10.0,
    down_s: float = 10.0,
    pause_after_refusal_s: float = 0.0,
    run: OutageRun | None = None,
) -> OutageRun:
    """Enrol new people from ``workers`` clients for ``load_s`` seconds; ``stop()`` the
    database at ``stop_at_s`` and ``start()`` it ``down_s`` later (in a thread, so the
    clients go on meanwhile). ``pause_after_refusal_s``: how long a client waits after a
    503 before its next request (0: it hammers the server, as the issue's probe did)."""
    run = run if run is not None else OutageRun()
    began = time.monotonic()
    deadline = began + load_s
    names = iter(range(1_000_000))

    def operator() -> None:
        time.sleep(stop_at_s)
        run.timeline["stopped"] = time.monotonic() - began
        stop()
        time.sleep(down_s)
        run.timeline["started_again"] = time.monotonic() - began
        start()

    outage = threading.Thread(target=operator, name="outage-operator", daemon=True)
    timeout = httpx.Timeout(60.0, connect=10.0)
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": key}, timeout=timeout, limits=limits
    ) as client:

        async def worker(number: int) -> None:
            while time.monotonic() < deadline:
                n = next(names)
                sent = time.monotonic()
                try:
                    response = await client.post(
                        "/enroll",
                        files={"file": ("walk.npz", walks[n % len(walks)])},
                        data={"identity": f"outage-{number}-{n}"},
                    )
                except httpx.TransportError as exc:
                    run.statuses["dropped"] += 1
                    run.dropped_errors[type(exc).__name__] += 1
                    continue
                status = response.status_code
                run.statuses[str(status)] += 1
                if status == 201:
                    body = response.json()
                    run.acknowledged[body["identity_id"]] = body["template_id"]
                    if "stopped" in run.timeline and "answered_again" not in run.timeline:
                        run.timeline["answered_again"] = time.monotonic() - began
                elif status in (503, 507):
                    run.refusal_seconds.append(time.monotonic() - sent)
                    _check_refusal(response, run)
                    if pause_after_refusal_s:
                        await asyncio.sleep(pause_after_refusal_s)

        outage.start()
        await asyncio.gather(*(worker(i) for i in range(workers)))
    await asyncio.to_thread(outage.join)
    return run


def _check_refusal(response: httpx.Response, run: OutageRun) -> None:
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    expected = "storage_full" if response.status_code == 507 else "database_unavailable"
    retry = response.headers.get("retry-after", "")
    if code != expected or not retry.isdigit():
        run.bad_refusals.append(f"{response.status_code} {code} Retry-After={retry!r}")


def verify_after(url: str, key: str, run: OutageRun, *, ready_within_s: float = 30.0) -> None:
    """Wait until ``/readyz`` is 200 again, then check every acknowledged enrolment and the
    index (``run.missing``, ``run.index_equals_sql``)."""
    with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30) as client:
        deadline = time.monotonic() + ready_within_s
        while client.get("/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready {ready_within_s} s after the outage")
            time.sleep(0.2)
        for identity_id, template_id in sorted(run.acknowledged.items()):
            response = client.get(f"/identities/{identity_id}")
            templates = (
                {t["id"] for t in response.json().get("template_list", [])}
                if response.status_code == 200
                else set()
            )
            if template_id not in templates:
                run.missing.append(identity_id)
        run.index_equals_sql = bool(client.get("/admin/index/check").json()["consistent"])
