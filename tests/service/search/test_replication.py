"""The change log and catch-up between two apps on one database (both backends, in process).

Two started apps on the same database stand for two replicas; catch-up is called directly so
the tests are deterministic (the real processes and the 1 s promise: tests/deploy).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.models import IndexChange, utcnow
from gaitid.service.search import changelog
from gaitid.service.search.replication import libpq_dsn
from gaitid.service.walks.inference import Embedder
from tests.utils.service_app import enroll, headers, identify, running


def _top(client: object, key: str, seed: int) -> str | None:
    matches = identify(client, key, seed=seed, top_k=1).json()["matches"]
    return matches[0]["identity"] if matches else None


def test_changes_of_one_app_reach_the_other(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    # followers polling every minute: only the explicit catch-up below moves them
    slow = settings.model_copy(update={"replication_poll_s": 60.0, "replication_listen": False})
    with running(slow, embedder) as a, running(slow, embedder) as b:
        state_a, state_b = a.app.state.service, b.app.state.service
        ann = enroll(a, keys["enroll"], "ann", seed=1).json()
        assert _top(b, keys["identify"], 1) is None  # B has not caught up yet
        assert state_b.indexes.catch_up() == 1
        assert _top(b, keys["identify"], 1) == "ann"
        assert state_a.indexes.catch_up() == 0  # its own row was applied at commit

        r = b.delete(f"/identities/{ann['identity_id']}", headers=headers(keys["admin"]))
        assert r.status_code == 204
        assert state_a.indexes.catch_up() == 1
        assert _top(a, keys["identify"], 1) is None
        # readiness and the check catch up first: an app behind by a commit is consistent
        enroll(b, keys["enroll"], "bo", seed=2)
        assert a.get("/readyz").json()["index_templates"] == 1
        assert a.get("/admin/index/check", headers=headers(keys["admin"])).json()["consistent"]


def test_add_then_erase_before_catch_up_leaves_nothing(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    slow = settings.model_copy(update={"replication_poll_s": 60.0, "replication_listen": False})
    with running(slow, embedder) as a, running(slow, embedder) as b:
        ann = enroll(a, keys["enroll"], "ann", seed=1).json()
        a.delete(f"/templates/{ann['template_id']}", headers=headers(keys["admin"]))
        state_b = b.app.state.service
        state_b.indexes.catch_up()
        assert len(state_b.indexes) == 0
        assert state_b.indexes.check().consistent


def test_pruned_log_makes_a_lagging_app_rebuild(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    slow = settings.model_copy(update={"replication_poll_s": 60.0, "replication_listen": False})
    with running(slow, embedder) as a, running(slow, embedder) as b:
        for seed in (1, 2, 3):
            enroll(a, keys["enroll"], f"p{seed}", seed=seed)
        db = Database(settings.resolved_database_url)
        try:
            with db.session(write=True) as session:
                pruned = changelog.prune(session, utcnow() + timedelta(days=1))
                session.commit()
            assert pruned == 2  # the newest row always stays
        finally:
            db.dispose()
        state_b = b.app.state.service
        state_b.indexes.catch_up()  # rows it never saw are gone: it rebuilds instead
        assert len(state_b.indexes) == 3 and state_b.indexes.check().consistent


def test_log_rows_are_ordered_ids_only(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        ann = enroll(client, keys["enroll"], "ann", seed=1).json()
        enroll(client, keys["enroll"], "ann", seed=2)
        client.delete(f"/identities/{ann['identity_id']}", headers=headers(keys["admin"]))
        origin = client.app.state.service.indexes.origin
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            rows = changelog.since(session, 0, 100)
            assert changelog.latest_seq(session) == rows[-1].seq
            columns = set(IndexChange.__table__.columns.keys())
    finally:
        db.dispose()
    assert [r.op for r in rows] == ["add", "add", "remove", "remove"]
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    assert {r.origin for r in rows} == {origin}
    assert sorted(r.template_id for r in rows[2:]) == sorted(r.template_id for r in rows[:2])
    assert columns == {"seq", "op", "gallery_id", "template_id", "origin", "at"}


def test_bad_inputs_are_refused(settings: Settings) -> None:
    db = Database(settings.resolved_database_url)
    try:
        with db.session(write=True) as session, pytest.raises(ValueError, match="'move'"):
            changelog.record(session, "move", 1, [1], "x")  # type: ignore[arg-type]
        with db.session() as session, pytest.raises(ValueError, match="limit"):
            changelog.since(session, 0, 0)
        with pytest.raises(ValueError, match="not both"), db.session(write=True, snapshot=True):
            pass
    finally:
        db.dispose()
    with pytest.raises(ValueError, match="'sqlite'"):
        libpq_dsn("sqlite:///x.db")
    assert libpq_dsn("postgresql+psycopg://u:p@h:5433/d") == "postgresql://u:p@h:5433/d"
