"""The camera-clip threshold through the API: a model with ``default_threshold`` and
``clip_threshold`` holds silhouette uploads to the first and camera clips to the second, and
every answer, ``GET /model`` and the audit say which route applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.models import AuditLog
from gaitid.service.walks.inference import Embedder
from tests.utils import clips
from tests.utils.onnx_models import with_metadata
from tests.utils.service_app import enroll, headers, identify, npz_upload, running

#: Far apart on purpose: no walk of the tiny random model reaches the silhouette threshold
#: unless it is the enrolled walk itself, and every score reaches the clip one, so the
#: decisions (not only the reported numbers) show which threshold was applied.
DEFAULT, CLIP = 0.9999, -1.0


@pytest.fixture(scope="module")
def two_threshold_model(tmp_path_factory: pytest.TempPathFactory, onnx_model: Path) -> Path:
    target = tmp_path_factory.mktemp("two-thresholds") / "tiny.onnx"
    return with_metadata(
        onnx_model, target, default_threshold=str(DEFAULT), clip_threshold=str(CLIP)
    )


@pytest.fixture(scope="module")
def clip_upload() -> tuple[str, bytes, str]:
    return (
        "clip.mp4",
        clips.encode_mp4(clips.crossing_clip(frames=30, seed=1).frames),
        "video/mp4",
    )


def _route(body: dict[str, Any]) -> tuple[float, str, str]:
    return body["threshold"], body["threshold_source"], body["threshold_route"]


def test_each_input_route_is_held_to_its_calibrated_threshold(
    settings: Settings,
    keys: dict[str, str],
    two_threshold_model: Path,
    clip_upload: tuple[str, bytes, str],
) -> None:
    settings = settings.model_copy(update={"model_path": two_threshold_model})
    embedder = Embedder(two_threshold_model, device="cpu", intra_op_threads=1)
    with running(settings, embedder) as client:
        ann = enroll(client, keys["enroll"], "ann", seed=1).json()

        def post(path: str, upload: tuple[str, bytes, str], **data: object) -> dict[str, Any]:
            r = client.post(
                path,
                headers=headers(keys["identify"]),
                files={"file": upload},
                data={k: str(v) for k, v in data.items()},
            )
            assert r.status_code == 200, r.text
            return dict(r.json())

        walk = identify(client, keys["identify"], seed=2).json()
        assert _route(walk) == (DEFAULT, "model", "silhouettes")
        assert walk["input"]["kind"] == "silhouettes" and walk["decision"] == "unknown"
        footage = post("/identify", clip_upload)
        assert footage["input"]["kind"] == "video"
        assert _route(footage) == (CLIP, "model", "clip") and footage["decision"] == "match"
        asked = post("/identify", clip_upload, threshold=0.99995)
        assert _route(asked) == (0.99995, "request", "clip") and asked["decision"] == "unknown"

        verified = post("/verify", clip_upload, identity_id=ann["identity_id"])
        assert _route(verified) == (CLIP, "model", "clip") and verified["match"] is True
        plain = post("/verify", npz_upload(2), identity="ann")
        assert _route(plain) == (DEFAULT, "model", "silhouettes") and plain["match"] is False
        strict = post("/verify", clip_upload, identity="ann", threshold=0.99995)
        assert _route(strict) == (0.99995, "request", "clip") and strict["match"] is False

        model = client.get("/model", headers=headers(keys["identify"])).json()
        assert (model["threshold"], model["threshold_source"]) == (DEFAULT, "model")
        assert model["clip_threshold"] == CLIP
        summary = client.get("/stats", headers=headers(keys["enroll"])).json()["model"]
        assert (summary["default_threshold"], summary["clip_threshold"]) == (DEFAULT, CLIP)
    db = Database(settings.resolved_database_url)
    with db.session() as session:
        rows = session.scalars(
            select(AuditLog)
            .where(AuditLog.action.in_(["identify", "verify"]))
            .order_by(AuditLog.id)
        ).all()
    db.dispose()
    assert [(r.action, (r.detail or {}).get("threshold_route")) for r in rows] == [
        ("identify", "silhouettes"),
        ("identify", "clip"),
        ("identify", "clip"),
        ("verify", "clip"),
        ("verify", "silhouettes"),
        ("verify", "clip"),
    ]


def test_a_model_without_a_clip_threshold_holds_clips_to_its_default(
    settings: Settings,
    keys: dict[str, str],
    onnx_model: Path,
    tmp_path: Path,
    clip_upload: tuple[str, bytes, str],
) -> None:
    calibrated = with_metadata(onnx_model, tmp_path / "default-only.onnx", default_threshold="0.42")
    settings = settings.model_copy(update={"model_path": calibrated})
    with running(settings, Embedder(calibrated, device="cpu", intra_op_threads=1)) as client:
        enroll(client, keys["enroll"], "ann", seed=1)
        r = client.post("/identify", headers=headers(keys["identify"]), files={"file": clip_upload})
        assert r.status_code == 200, r.text
        assert _route(r.json()) == (0.42, "model", "clip")
        model = client.get("/model", headers=headers(keys["identify"])).json()
        assert (model["threshold"], model["clip_threshold"]) == (0.42, None)
        summary = client.get("/stats", headers=headers(keys["enroll"])).json()["model"]
        assert (summary["default_threshold"], summary["clip_threshold"]) == (0.42, None)
