"""Health, readiness, metrics, stats, stale templates, index maintenance, timeouts."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import SecretStr
from sqlalchemy import select

from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.models import Identity, Template
from gaitid.service.walks.inference import Embedder
from tests.utils.service_app import assert_error, build_app, enroll, headers, identify, running


def test_healthz_readyz(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    with running(settings, embedder) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": True, "model": True, "index": True}
        enroll(client, keys["enroll"], "ann", seed=1)
        body = client.get("/readyz").json()
        assert (body["templates"], body["index_templates"], body["stale_templates"]) == (1, 1, 0)
        # an index that lost a vector behind SQL's back is not ready until rebuilt
        state = client.app.state.service
        gallery_id = next(iter(state.indexes._indexes))
        state.indexes.remove(gallery_id, np.asarray([1], np.int64))
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and not_ready.json()["checks"]["index"] is False
        check = client.get("/admin/index/check", headers=headers(keys["admin"])).json()
        assert check["consistent"] is False and check["missing_from_index"] == [1]
        rebuilt = client.post("/admin/index/rebuild", headers=headers(keys["admin"])).json()
        assert rebuilt["templates"] == 1 and rebuilt["galleries"] == 1
        assert client.get("/readyz").status_code == 200


def test_not_ready_before_start(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(build_app(settings, embedder))  # no `with`: lifespan never ran
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["status"] == "not_ready"
    assert_error(client.get("/identities", headers=headers(keys["admin"])), 503, "unavailable")
    assert client.get("/healthz").status_code == 200


def test_metrics(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    with running(settings, embedder) as client:
        enroll(client, keys["enroll"], "ann", seed=1)
        identify(client, keys["identify"], seed=1)
        client.get("/identities/12345", headers=headers(keys["enroll"]))
        text = client.get("/metrics").text
    assert 'gaitid_http_requests_total{method="POST",route="/enroll",status="201"} 1.0' in text
    assert 'route="/identities/{identity_id}",status="404"' in text
    assert "gaitid_http_request_duration_seconds_bucket" in text
    assert "gaitid_inference_seconds_count 2.0" in text
    assert "gaitid_search_seconds_count 1.0" in text  # the one identify's gallery search
    assert "gaitid_index_templates 1.0" in text
    assert 'gaitid_identify_decisions_total{decision="match"} 1.0' in text
    assert 'gaitid_enrollments_total{result="created"} 1.0' in text


def test_two_apps_have_separate_metrics(settings: Settings, embedder: Embedder) -> None:
    with running(settings, embedder) as a, running(settings, embedder) as b:
        a.get("/healthz")
        assert 'route="/healthz"' in a.get("/metrics").text
        assert 'route="/healthz"' not in b.get("/metrics").text


def test_stale_templates_are_counted_and_never_compared(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        ann = enroll(client, keys["enroll"], "ann", seed=1).json()
        enroll(client, keys["enroll"], "ben", seed=2)
    db = Database(settings.resolved_database_url)
    with db.session(write=True) as session:
        ben = session.scalars(select(Identity).where(Identity.name == "ben")).one()
        old = session.scalars(
            select(Template).where(Template.identity_id == ann["identity_id"])
        ).one()
        # ben gets a template of an older model whose vector equals ann's walk exactly
        session.add(
            Template(
                identity_id=ben.id,
                model_version="old",
                model_sha256="0" * 64,
                embedding=old.embedding,
                embedding_dim=256,
                content_sha256="1" * 64,
                frames_used=12,
                frames_total=12,
            )
        )
        session.commit()
    db.dispose()
    with running(settings, embedder) as client:
        ready = client.get("/readyz").json()
        assert (ready["templates"], ready["stale_templates"], ready["status"]) == (2, 1, "ready")
        stats = client.get("/stats", headers=headers(keys["enroll"])).json()
        assert (stats["templates"], stats["stale_templates"], stats["identities"]) == (2, 1, 2)
        assert stats["model"]["sha256"] == embedder.info.sha256
        matches = identify(client, keys["identify"], seed=1).json()["matches"]
        assert [m["identity"] for m in matches] == ["ann", "ben"]
        assert matches[1]["score"] < 0.9999  # ben's stale copy of ann's vector is not used
        detail = client.get(
            f"/identities/{matches[1]['identity_id']}", headers=headers(keys["enroll"])
        ).json()
        assert sorted(t["stale"] for t in detail["template_list"]) == [False, True]
        assert (detail["templates"], detail["stale_templates"]) == (1, 1)


class _SlowEmbedder:
    """Delegates to the real embedder after a pause (to exceed the request timeout)."""

    def __init__(self, inner: Embedder, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.info, self.providers = inner.info, inner.providers

    def embed_batch(self, sequences: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        time.sleep(self.delay_s)
        return self.inner.embed_batch(sequences)


def test_request_timeout_is_504(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    quick = settings.model_copy(update={"request_timeout_s": 0.3})
    slow = _SlowEmbedder(embedder, 1.0)
    with running(quick, slow) as client:  # type: ignore[arg-type]
        error = assert_error(enroll(client, keys["enroll"], "ann", seed=1), 504, "timeout")
        assert "GAITID_REQUEST_TIMEOUT_S" in error["message"]
        assert client.get("/healthz").status_code == 200


def test_metrics_token_when_configured(settings: Settings, embedder: Embedder) -> None:
    """Issue 14, item 8: with GAITID_METRICS_TOKEN, /metrics needs it as a bearer token."""
    token = "s3cret-metrics-token-0123"
    guarded = settings.model_copy(update={"metrics_token": SecretStr(token)})
    with running(guarded, embedder) as client:
        assert_error(client.get("/metrics"), 401, "unauthenticated")
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert_error(wrong, 401)
        ok = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and "gaitid_" in ok.text
        assert client.get("/healthz").status_code == 200  # liveness stays open
        # /readyz stays open too, but says how many people are enrolled only with the token
        anonymous = client.get("/readyz")
        assert anonymous.status_code == 200 and anonymous.json()["status"] == "ready"
        assert anonymous.json()["templates"] is None
        assert anonymous.json()["index_templates"] is None
        assert anonymous.json()["stale_templates"] is None
        shown = client.get("/readyz", headers={"Authorization": f"Bearer {token}"}).json()
        assert (shown["templates"], shown["index_templates"], shown["stale_templates"]) == (0, 0, 0)
    with pytest.raises(ValueError, match="16"):
        Settings(metrics_token="short")
