"""Several real ``gaitid serve`` processes on one PostgreSQL database, and kill -9 safety.

The servers are uvicorn subprocesses on 127.0.0.1 (free ports), started exactly as a user
would (``tests.utils.live_server``), against a throwaway database that is dropped afterwards.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from gaitid.service.db.engine import Database
from gaitid.service.db.models import Template
from tests.deploy.conftest import admin_key
from tests.utils.live_server import cli_env, live_server
from tests.utils.uploads import encode_npz, walking_masks

pytestmark = pytest.mark.postgres

#: The promise under test: a change on one replica is visible on every other within 1 s.
VISIBLE_WITHIN_S = 1.0


def _upload(seed: int) -> dict[str, tuple[str, bytes]]:
    return {"file": (f"walk{seed}.npz", encode_npz(walking_masks(12, seed=seed)))}


def _enroll(url: str, key: str, name: str, seed: int) -> dict:
    r = httpx.post(
        f"{url}/enroll",
        headers={"X-API-Key": key},
        files=_upload(seed),
        data={"identity": name},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _top_identity(url: str, key: str, seed: int) -> str | None:
    r = httpx.post(
        f"{url}/identify",
        headers={"X-API-Key": key},
        files=_upload(seed),
        data={"top_k": "1"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    matches = r.json()["matches"]
    return matches[0]["identity"] if matches else None


def _seen_within(probe: Callable[[], bool], since: float, limit_s: float) -> float:
    """Seconds after ``since`` at which a request *sent* then saw ``probe()`` hold.

    Fails when no request sent within ``limit_s`` of ``since`` saw it.
    """
    while True:
        sent = time.monotonic()
        assert sent - since <= limit_s, f"not visible within {limit_s} s"
        if probe():
            return sent - since
        time.sleep(0.02)


def _check(url: str, key: str) -> dict:
    r = httpx.get(f"{url}/admin/index/check", headers={"X-API-Key": key}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture
def env(tmp_path: Path, onnx_model: Path, pg_url: str) -> dict[str, str]:
    return cli_env(
        tmp_path / "data",
        onnx_model,
        GAITID_DATABASE_URL=pg_url,
        GAITID_MIN_FRAMES="4",
        GAITID_INTRA_OP_THREADS="1",
    )


def test_two_replicas_see_each_others_changes(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    key = admin_key(pg_url)
    with live_server(env, tmp_path / "a.log") as a:
        with live_server(env, tmp_path / "b.log") as b:
            # enrol on A -> identify on B finds it within 1 s
            alice = _enroll(a.url, key, "alice", seed=1)
            t0 = time.monotonic()
            _seen_within(lambda: _top_identity(b.url, key, 1) == "alice", t0, VISIBLE_WITHIN_S)
            bob = _enroll(b.url, key, "bob", seed=2)
            t0 = time.monotonic()
            _seen_within(lambda: _top_identity(a.url, key, 2) == "bob", t0, VISIBLE_WITHIN_S)

            # delete on B -> A no longer returns it within 1 s
            r = httpx.delete(
                f"{b.url}/identities/{alice['identity_id']}", headers={"X-API-Key": key}
            )
            assert r.status_code == 204, r.text
            t0 = time.monotonic()
            _seen_within(lambda: _top_identity(a.url, key, 1) != "alice", t0, VISIBLE_WITHIN_S)
            for server in (a, b):
                report = _check(server.url, key)
                assert report["consistent"] and report["db_templates"] == 1, report

            # B dies (kill -9); A changes things meanwhile; B restarts and is caught up
            b.process.kill()
            b.process.wait(timeout=10)
        carol = _enroll(a.url, key, "carol", seed=3)
        r = httpx.delete(f"{a.url}/templates/{bob['template_id']}", headers={"X-API-Key": key})
        assert r.status_code == 204, r.text
        with live_server(env, tmp_path / "b2.log") as b:
            assert _top_identity(b.url, key, 3) == "carol"
            assert _top_identity(b.url, key, 2) != "bob"
            report = _check(b.url, key)
            assert report["consistent"] and report["db_templates"] == 1, report
            # and B follows A again after its restart
            _enroll(a.url, key, "dave", seed=4)
            t0 = time.monotonic()
            _seen_within(lambda: _top_identity(b.url, key, 4) == "dave", t0, VISIBLE_WITHIN_S)
        assert carol["created"] is True


def test_kill_9_during_enrolls_loses_no_acknowledged_enrol(
    env: dict[str, str], pg_url: str, tmp_path: Path
) -> None:
    key = admin_key(pg_url)
    acked: list[dict] = []
    acked_lock = threading.Lock()
    enough = threading.Event()

    def enrol_forever(server_url: str, worker: int) -> None:
        with httpx.Client(timeout=30) as client:
            for i in range(1000):
                seed = 1000 * (worker + 1) + i
                try:
                    r = client.post(
                        f"{server_url}/enroll",
                        headers={"X-API-Key": key},
                        files=_upload(seed),
                        data={"identity": f"w{worker}-{i}"},
                    )
                except httpx.TransportError:
                    return  # the server was killed mid-request: this one was never acknowledged
                if r.status_code // 100 == 2:
                    with acked_lock:
                        acked.append({**r.json(), "seed": seed})
                        if len(acked) >= 12:
                            enough.set()

    with live_server(env, tmp_path / "crash.log") as server:
        workers = [
            threading.Thread(target=enrol_forever, args=(server.url, w), daemon=True)
            for w in range(3)
        ]
        for worker in workers:
            worker.start()
        assert enough.wait(60), "the server acknowledged too few enrolments to test"
        server.process.kill()  # SIGKILL, requests in flight
        server.process.wait(timeout=10)
        for worker in workers:
            worker.join(30)
    assert len(acked) >= 12

    with live_server(env, tmp_path / "restart.log") as server:  # ready = index equals SQL
        ready = httpx.get(f"{server.url}/readyz", timeout=10).json()
        assert ready["templates"] == ready["index_templates"] >= len(acked), ready
        report = _check(server.url, key)
        assert report["consistent"], report
        db = Database(env["GAITID_DATABASE_URL"])
        try:
            with db.session() as session:
                stored = set(session.scalars(select(Template.id)))
        finally:
            db.dispose()
        assert {e["template_id"] for e in acked} <= stored
        for entry in acked[:3]:  # and they are searchable
            assert _top_identity(server.url, key, entry["seed"]) == entry["identity"]
