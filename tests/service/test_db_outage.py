"""Issue 31: when the database goes away, requests get 503 + Retry-After, never 500s or
dropped connections, the log says so once, and nothing acknowledged is lost.

- The pieces: which driver errors mean "the database cannot serve" (``service.db.failures``)
  and the circuit that fails fast and logs once per outage (``service.db.outage``).
- The embedded default, in-process: SQLite locked past its busy timeout, read-only, full.
- PostgreSQL for real: a private server (``tests.utils.pg_cluster``) stopped with
  ``pg_ctl stop -m fast`` under enrol load behind a live ``gaitid serve``, and started again.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select
from sqlalchemy import exc as sa_exc

from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.failures import DatabaseFailure, classify
from gaitid.service.db.models import Template
from gaitid.service.db.outage import DatabaseCircuit
from gaitid.service.db.schema import upgrade
from gaitid.service.errors import install_error_handlers
from gaitid.service.walks.inference import Embedder
from tests.utils import pg_cluster
from tests.utils.db_outage import enrol_through_outage, verify_after
from tests.utils.live_server import cli_env, live_server
from tests.utils.service_app import assert_error, headers, make_keys, npz_upload, running
from tests.utils.uploads import encode_npz, walking_masks


# ---------------------------------------------------------------------------- classification
def _sqlite_error(sql: str, setup: str = "") -> sqlite3.Error:
    conn = sqlite3.connect(":memory:")
    try:
        if setup:
            conn.executescript(setup)
        conn.execute(sql)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError(f"{sql!r} did not fail")


def _kind(exc: BaseException) -> str | None:
    failure = classify(exc)
    return None if failure is None else failure.kind


def test_classify_reads_sqlite_result_codes() -> None:
    setup = "CREATE TABLE t(x); PRAGMA query_only=1;"
    assert _kind(_sqlite_error("INSERT INTO t VALUES (1)", setup)) == "read_only"
    setup = "CREATE TABLE t(x); PRAGMA max_page_count=2;"
    full = _sqlite_error("INSERT INTO t SELECT randomblob(100000)", setup)
    assert _kind(full) == "full"
    # wrapped by SQLAlchemy, behind a cause, or being handled when another error came: found
    wrapped = sa_exc.OperationalError("INSERT ...", {}, full)
    assert _kind(wrapped) == "full"
    outer = RuntimeError("while storing")
    outer.__cause__ = wrapped
    assert _kind(outer) == "full"
    savepoint = sa_exc.OperationalError("ROLLBACK TO SAVEPOINT sp", {}, sqlite3.OperationalError())
    savepoint.__context__ = wrapped
    assert _kind(savepoint) == "full"
    # a message-only error from an older driver
    assert _kind(sqlite3.OperationalError("database is locked")) == "locked"
    failure = classify(full)
    assert failure is not None and failure.detail.startswith("OperationalError: database or")


def test_classify_leaves_bugs_alone() -> None:
    setup = "CREATE TABLE t(x UNIQUE); INSERT INTO t VALUES (1);"
    unique = _sqlite_error("INSERT INTO t VALUES (1)", setup)
    assert _kind(unique) is None
    assert _kind(sa_exc.IntegrityError("INSERT", {}, unique)) is None
    assert _kind(_sqlite_error("SELEC 1")) is None
    assert _kind(ValueError("a bug")) is None


def test_classify_reads_postgres_states() -> None:
    psycopg = pytest.importorskip("psycopg")
    refused = psycopg.OperationalError("connection failed: Connection refused")
    assert _kind(sa_exc.OperationalError("SELECT 1", {}, refused)) == "unreachable"
    assert _kind(psycopg.errors.AdminShutdown("terminating connection")) == "unreachable"
    assert _kind(psycopg.errors.CannotConnectNow("shutting down")) == "unreachable"
    assert _kind(psycopg.errors.DiskFull("no space left on device")) == "full"
    assert _kind(psycopg.errors.UniqueViolation("duplicate key")) is None
    assert _kind(psycopg.errors.SyntaxError("syntax error")) is None
    invalidated = sa_exc.DBAPIError("SELECT 1", {}, ValueError("x"), connection_invalidated=True)
    assert _kind(invalidated) == "unreachable"


# ---------------------------------------------------------------------------- the circuit
class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_circuit_fails_fast_probes_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    circuit = DatabaseCircuit(failures_to_open=3, open_s=2.0, probe_s=4.0, clock=clock)
    down = DatabaseFailure("unreachable", "OperationalError: connection refused")
    caplog.set_level(logging.WARNING, logger="gaitid.service.db.outage")
    for _ in range(2):
        assert circuit.admit() is None
        circuit.failed(down)
        circuit.refused("unreachable")
    assert circuit.down and circuit.admit() is None  # two failures: still trying
    circuit.succeeded(epoch=0)  # a check that began before the outage: not its end
    assert circuit.down
    circuit.failed(down)  # the third opens the circuit
    circuit.refused("unreachable")
    for _ in range(100):  # fails fast: no attempt, no log line
        assert circuit.admit() == pytest.approx(2.0)
        circuit.refused("unreachable")
    assert circuit.retry_after_s() == 2
    clock.now += 2.0
    assert circuit.admit() is None  # one probe goes through ...
    assert circuit.admit() == pytest.approx(2.0)  # ... the others wait for it
    circuit.failed(down)  # the probe failed: open again
    assert circuit.admit() == pytest.approx(2.0)
    clock.now += 2.5
    assert circuit.admit() is None
    circuit.succeeded()  # the probe connected
    assert not circuit.down and circuit.admit() is None
    stats = circuit.stats()
    assert (stats.up, stats.outages, stats.refused["unreachable"]) == (True, 1, 103)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("database unreachable (OperationalError: connection refused)")
    assert "after 4.5 s unreachable; 103 requests refused" in lines[1]


def test_other_kinds_warn_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    circuit = DatabaseCircuit(clock=clock)
    caplog.set_level(logging.WARNING, logger="gaitid.service.db.outage")
    for _ in range(50):
        circuit.failed(DatabaseFailure("locked", "OperationalError: database is locked"))
    assert circuit.admit() is None and not circuit.down  # locks never open the circuit
    clock.now += 61
    circuit.failed(DatabaseFailure("locked", "OperationalError: database is locked"))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "(49 more since the last warning)" in lines[1]


# ---------------------------------------------------------------------------- SQLite, in-process
@pytest.fixture
def sqlite_settings(tmp_path: Path, sqlite_template: Path, onnx_model: Path) -> Settings:
    """A migrated SQLite copy, and a busy timeout short enough to wait out in a test."""
    target = tmp_path / "gaitid.db"
    shutil.copyfile(sqlite_template, target)
    return Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{target}",
        model_path=onnx_model,
        min_frames=4,
        batch_max_wait_ms=2.0,
        intra_op_threads=1,
        database_busy_timeout_s=0.2,
    )


@pytest.fixture
def sqlite_keys(sqlite_settings: Settings) -> dict[str, str]:
    return make_keys(sqlite_settings)


def _on_every_connection(db: Database, pragma: str) -> None:
    """Run ``pragma`` on each new connection of the app's engine, and drop pooled ones."""

    def _apply(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(pragma)

    event.listen(db.engine, "connect", _apply)
    db.engine.dispose()


def _templates(settings: Settings) -> int:
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            return int(session.scalar(select(func.count()).select_from(Template)) or 0)
    finally:
        db.dispose()


def _refused_metric(client: Any, reason: str) -> float:
    text = client.get("/metrics").text
    line = f'gaitid_database_refused_requests_total{{reason="{reason}"}}'
    return float(next(s.split()[-1] for s in text.splitlines() if s.startswith(line)))


@pytest.mark.parametrize(
    ("pragma", "status", "code", "reason"),
    [
        ("PRAGMA query_only=1", 503, "database_unavailable", "read_only"),
        ("PRAGMA max_page_count=1", 507, "storage_full", "full"),
    ],
    ids=["read-only", "disk-full"],
)
def test_sqlite_read_only_or_full_is_refused_cleanly(
    sqlite_settings: Settings,
    embedder: Embedder,
    sqlite_keys: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    pragma: str,
    status: int,
    code: str,
    reason: str,
) -> None:
    admin = headers(sqlite_keys["admin"])
    with running(sqlite_settings, embedder) as client:
        first = client.post(
            "/enroll", headers=admin, files={"file": npz_upload(1)}, data={"identity": "a"}
        )
        assert first.status_code == 201, first.text
        db = client.app.state.service.db
        # shrink to the pages in use: any new page is "database or disk is full"
        with db.engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        _on_every_connection(
            db, pragma.replace("=1", f"={pages}") if "max_page" in pragma else pragma
        )
        caplog.clear()
        caplog.set_level(logging.WARNING)
        stored, refused = 1, 0
        for seed in range(2, 80):  # until four are refused (free space in pages goes first)
            response = client.post(
                "/enroll",
                headers=admin,
                files={"file": npz_upload(seed)},
                data={"identity": f"p{seed}"},
            )
            if response.status_code == 201:
                assert reason == "full" and refused == 0, response.text
                stored += 1
                continue
            error = assert_error(response, status, code)
            assert error["details"] == {"reason": reason}
            assert int(response.headers["retry-after"]) >= 1
            refused += 1
            if refused == 4:
                break
        assert refused == 4
        # reads still answer; nothing half-written; the index is not ahead of SQL
        assert client.get("/identities", headers=admin).status_code == 200
        assert client.get("/healthz").status_code == 200
        check = client.get("/admin/index/check", headers=admin).json()
        assert check["consistent"] and check["db_templates"] == stored, check
        assert _refused_metric(client, reason) == 4
    assert _templates(sqlite_settings) == stored
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and not any(r.exc_info for r in warnings), warnings


def test_sqlite_locked_past_busy_timeout_is_503(
    sqlite_settings: Settings, embedder: Embedder, sqlite_keys: dict[str, str]
) -> None:
    admin = headers(sqlite_keys["admin"])
    path = sqlite_settings.resolved_database_url.removeprefix("sqlite:///")
    with running(sqlite_settings, embedder) as client:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            response = client.post(
                "/enroll", headers=admin, files={"file": npz_upload(1)}, data={"identity": "a"}
            )
            error = assert_error(response, 503, "database_unavailable")
            assert error["details"] == {"reason": "locked"}
            assert response.headers["retry-after"] == "1"
        finally:
            other.execute("ROLLBACK")
            other.close()
        again = client.post(
            "/enroll", headers=admin, files={"file": npz_upload(1)}, data={"identity": "a"}
        )
        assert again.status_code == 201, again.text
        check = client.get("/admin/index/check", headers=admin).json()
        assert check["consistent"] and check["db_templates"] == 1, check


def test_open_circuit_refuses_what_needs_the_database_and_nothing_else(
    sqlite_settings: Settings, embedder: Embedder, sqlite_keys: dict[str, str]
) -> None:
    """While the circuit is open, every route that needs SQL answers 503 at once with the
    error body and Retry-After; health, metrics and the docs keep answering."""
    settings = sqlite_settings.model_copy(update={"database_circuit_open_s": 60.0})
    admin = headers(sqlite_keys["admin"])
    with running(settings, embedder) as client:
        db = client.app.state.service.db
        enrolled = client.post(
            "/enroll", headers=admin, files={"file": npz_upload(1)}, data={"identity": "a"}
        )
        assert enrolled.status_code == 201, enrolled.text
        for _ in range(settings.database_circuit_failures):
            db.circuit.failed(DatabaseFailure("unreachable", "OperationalError: refused"))
        upload = {"file": npz_upload(2)}
        needs_sql = [
            client.post("/enroll", headers=admin, files=upload, data={"identity": "b"}),
            client.post("/identify", headers=admin, files=upload),
            client.post("/verify", headers=admin, files=upload, data={"identity": "a"}),
            client.get("/identities", headers=admin),
            client.get("/identities/1", headers=admin),
            client.delete("/identities/1", headers=admin),
            client.get("/galleries", headers=admin),
            client.get("/stats", headers=admin),
            client.get("/admin/index/check", headers=admin),
            client.get("/keys", headers=admin),
        ]
        for response in needs_sql:
            error = assert_error(response, 503, "database_unavailable")
            assert error["details"] == {"reason": "unreachable"}
            assert 1 <= int(response.headers["retry-after"]) <= 60
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
        assert client.get("/healthz").status_code == 200
        assert client.get("/docs").status_code == 200
        metrics = client.get("/metrics").text
        assert "gaitid_database_up 0.0" in metrics
        assert _refused_metric(client, "unreachable") == len(needs_sql)
        db.circuit.succeeded()  # the database is back
        assert client.get("/identities/1", headers=admin).status_code == 200


def test_driver_errors_outside_a_session_are_mapped_too(caplog: pytest.LogCaptureFixture) -> None:
    """A driver error that bypasses ``Database.session`` gets the same 503; a bug stays a 500
    with its traceback, answered by the handler (not re-raised to the server)."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/locked")
    def locked() -> None:
        raise sa_exc.OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))

    @app.get("/bug")
    def bug() -> None:
        raise sa_exc.ProgrammingError("SELEC 1", {}, sqlite3.OperationalError("syntax error"))

    with TestClient(app, raise_server_exceptions=True) as client:
        response = client.get("/locked")
        assert_error(response, 503, "database_unavailable")
        assert response.headers["retry-after"] == "1"
        caplog.set_level(logging.ERROR, logger="gaitid.service.errors")
        assert_error(client.get("/bug"), 500, "internal_error")
    assert [r.getMessage() for r in caplog.records] == ["unhandled error"]


# ---------------------------------------------------------------------------- PostgreSQL, live
@pytest.fixture
def private_postgres() -> Any:
    reason = pg_cluster.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    pytest.importorskip("psycopg")
    with pg_cluster.pg_cluster() as cluster:
        db = Database(cluster.url)
        upgrade(db.engine)
        db.dispose()
        yield cluster


def test_postgres_stopped_under_load(
    private_postgres: pg_cluster.PgCluster, tmp_path: Path, onnx_model: Path
) -> None:
    """The issue's probe, shortened: 4 enrol workers, the database stopped (fast) for 3 s."""
    from bench.service_http import create_admin_key

    cluster = private_postgres
    env = cli_env(
        tmp_path / "data",
        onnx_model,
        GAITID_DATABASE_URL=cluster.url,
        GAITID_MIN_FRAMES="4",
        GAITID_LOG_LEVEL="warning",
        GAITID_REPLICATION_POLL_S="0.2",
    )
    key = create_admin_key(env, "outage")
    walks = [encode_npz(walking_masks(12, seed=s)) for s in range(8)]
    log = tmp_path / "serve.log"
    with live_server(env, log) as server:
        run = asyncio.run(
            enrol_through_outage(
                server.url,
                key,
                walks,
                stop=cluster.stop,
                start=cluster.start,
                workers=4,
                load_s=8.0,
                stop_at_s=2.0,
                down_s=3.0,
                pause_after_refusal_s=0.02,
            )
        )
        verify_after(server.url, key, run)
        metrics = httpx.get(f"{server.url}/metrics").text
    summary = run.summary()
    assert run.statuses["201"] > 0 and run.statuses["503"] > 0, summary
    assert set(run.statuses) <= {"201", "503"}, summary  # no 500, nothing dropped
    assert not run.bad_refusals, run.bad_refusals[:5]
    assert not run.missing and run.index_equals_sql, summary
    assert "gaitid_database_outages_total 1.0" in metrics
    assert "gaitid_database_up 1.0" in metrics
    output = log.read_text()
    assert "Traceback" not in output, output[-3000:]
    lines = [line for line in output.splitlines() if " WARNING " in line or " ERROR " in line]
    assert len(lines) <= 4, lines
    assert any("database unreachable" in line for line in lines), lines
    assert any("database reachable again" in line for line in lines), lines
