"""POST /identify and POST /verify: ranking, decisions, thresholds, 1:1 checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from gaitid.contract import merge_embeddings, split_walk
from gaitid.decode import decode_upload
from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.models import Template
from gaitid.service.walks.inference import Embedder
from tests.utils.service_app import assert_error, enroll, headers, identify, npz_upload, running
from tests.utils.uploads import encode_npz, encode_zip


def test_identify_ranks_the_enrolled_walk_first(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        ids = {
            name: enroll(client, keys["enroll"], name, seed=i).json()["identity_id"]
            for i, name in enumerate(["ann", "ben", "cid", "dot"], start=1)
        }
        for i, name in enumerate(["ann", "ben", "cid", "dot"], start=1):
            r = identify(client, keys["identify"], seed=i, top_k=3)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["matches"][0]["identity"] == name
            assert body["matches"][0]["identity_id"] == ids[name]
            assert body["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4)
            assert len(body["matches"]) == 3
            scores = [m["score"] for m in body["matches"]]
            assert scores == sorted(scores, reverse=True)
            assert body["decision"] == "match"
            assert body["model_version"] == embedder.info.version
            assert body["timings"]["search_ms"] is not None


def test_identify_on_synthetic_walkers(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """Raw 320x240 camera masks of synthetic people: the same walk comes back first."""
    from gaitid.training.synth.dataset import SynthConfig, render_walk, subject_identity

    config = SynthConfig(subjects=4, min_frames=10, max_frames=14)
    walks = [
        render_walk(subject_identity(0, s), "nm-01", 90, np.random.default_rng(s), config)
        for s in range(4)
    ]
    with running(settings, embedder) as client:
        for s, masks in enumerate(walks):
            r = client.post(
                "/enroll",
                headers=headers(keys["enroll"]),
                files={"file": (f"s{s}.zip", encode_zip(masks))},
                data={"identity": f"subject-{s}"},
            )
            assert r.status_code == 201, r.text
        for s, masks in enumerate(walks):
            r = client.post(
                "/identify",
                headers=headers(keys["identify"]),
                files={"file": (f"s{s}.npz", encode_npz(masks))},
            )  # same walk, other format
            assert r.status_code == 200, r.text
            assert r.json()["matches"][0]["identity"] == f"subject-{s}"


def test_best_template_per_identity(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        for seed in (1, 2, 3):
            enroll(client, keys["enroll"], "ann", seed=seed)
        other = enroll(client, keys["enroll"], "ben", seed=4).json()
        body = identify(client, keys["identify"], seed=2, top_k=5).json()
        assert [m["identity"] for m in body["matches"]] == ["ann", "ben"]
        assert body["matches"][1]["template_id"] == other["template_id"]
        best = body["matches"][0]
        assert best["score"] == pytest.approx(1.0, abs=1e-4)
        top1 = identify(client, keys["identify"], seed=2, top_k=1).json()
        assert [m["identity"] for m in top1["matches"]] == ["ann"]


def test_threshold_precedence(
    settings: Settings, embedder: Embedder, keys: dict[str, str], tmp_path: Path, onnx_model: Path
) -> None:
    with running(settings, embedder) as client:
        enroll(client, keys["enroll"], "ann", seed=1)
        body = identify(client, keys["identify"], seed=1).json()
        assert (body["threshold"], body["threshold_source"]) == (
            settings.fallback_threshold,
            "fallback",
        )
        r = client.patch(
            "/galleries/default", headers=headers(keys["admin"]), json={"default_threshold": 0.7}
        )
        assert r.status_code == 200 and r.json()["default_threshold"] == 0.7
        body = identify(client, keys["identify"], seed=1).json()
        assert (body["threshold"], body["threshold_source"]) == (0.7, "gallery")
        body = identify(client, keys["identify"], seed=1, threshold=1.0).json()
        assert (body["threshold"], body["threshold_source"]) == (1.0, "request")
        body = identify(client, keys["identify"], seed=2, threshold=0.9999).json()
        assert body["decision"] == "unknown"  # another walk never reaches 0.9999
        client.patch(
            "/galleries/default", headers=headers(keys["admin"]), json={"default_threshold": None}
        )
    calibrated = _with_default_threshold(onnx_model, tmp_path / "calibrated.onnx", 0.42)
    model_settings = settings.model_copy(update={"model_path": calibrated})
    with running(model_settings, Embedder(calibrated, device="cpu")) as client:
        enroll(client, keys["enroll"], "ann", seed=1)
        body = identify(client, keys["identify"], seed=1).json()
        assert (body["threshold"], body["threshold_source"]) == (0.42, "model")


def _with_default_threshold(src: Path, dst: Path, value: float) -> Path:
    import onnx

    model = onnx.load(str(src))
    entry = model.metadata_props.add()
    entry.key, entry.value = "default_threshold", str(value)
    onnx.save(model, str(dst))
    return dst


def test_identify_errors(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    with running(settings, embedder) as client:
        assert_error(identify(client, keys["identify"], seed=1), 404, "not_found")  # no gallery yet
        enroll(client, keys["enroll"], "ann", seed=1)
        assert_error(identify(client, keys["identify"], seed=1, gallery="nope"), 404, "not_found")
        for bad in (
            {"top_k": 0},
            {"top_k": "x"},
            {"threshold": 1.5},
            {"threshold": "nan"},
            {"gallery": "a b"},
        ):
            assert_error(identify(client, keys["identify"], seed=1, **bad), 422)
        limited = identify(client, keys["identify"], seed=1, top_k=200)
        assert_error(limited, 422, "invalid_request")


def test_verify(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    with running(settings, embedder) as client:
        ann = enroll(client, keys["enroll"], "ann", seed=1).json()
        enroll(client, keys["enroll"], "ben", seed=2)

        def verify(seed: int, **data: object) -> object:
            return client.post(
                "/verify",
                headers=headers(keys["identify"]),
                files={"file": npz_upload(seed)},
                data={k: str(v) for k, v in data.items()},
            )

        same = verify(1, identity_id=ann["identity_id"])
        assert same.status_code == 200, same.text
        body = same.json()
        assert body["match"] is True and body["score"] == pytest.approx(1.0, abs=1e-4)
        assert body["template_id"] == ann["template_id"] and body["identity"] == "ann"
        by_name = verify(1, identity="ann").json()
        assert by_name["identity_id"] == ann["identity_id"]
        strict = verify(2, identity="ann", threshold=0.9999).json()
        assert strict["match"] is False and strict["threshold_source"] == "request"
        assert_error(verify(1, identity_id=999), 404, "not_found")
        assert_error(verify(1, identity="nobody"), 404, "not_found")
        assert_error(verify(1, identity="ann", gallery="other"), 404, "not_found")
        # issue 14, item 6: an identity of another gallery is not found in the one named
        enroll(client, keys["enroll"], "cat", seed=5, gallery="other")
        assert_error(verify(1, identity_id=ann["identity_id"], gallery="other"), 404, "not_found")
        assert_error(verify(1), 422, "invalid_request")
        assert_error(
            verify(1, identity="ann", identity_id=ann["identity_id"]), 422, "invalid_request"
        )
        assert_error(verify(1, identity_id=0), 422)
        assert_error(verify(1, identity_id=2**63), 422)  # past 64 bits: no row, no overflow
        assert_error(verify(1, identity_id=2**70), 422)
        client.delete(f"/templates/{ann['template_id']}", headers=headers(keys["admin"]))
        assert_error(verify(1, identity_id=ann["identity_id"]), 409, "conflict")


def test_long_walks_are_embedded_in_chunks(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """A walk over ``max_embed_frames`` gets the merged embedding of its equal chunks."""
    chunked = settings.model_copy(update={"max_embed_frames": 16})
    _, data, _ = npz_upload(1, frames=40)
    frames = decode_upload(data).frames
    chunks = split_walk(frames, 16)
    assert [len(c) for c in chunks] == [13, 14, 13]
    expected = merge_embeddings(embedder.embed_batch(chunks))
    whole = embedder.embed_batch([frames])[0]
    with running(chunked, embedder) as client:
        enroll(client, keys["enroll"], "ann", seed=1, frames=40)
        r = identify(client, keys["identify"], seed=1, frames=40, top_k=1)
        assert r.status_code == 200, r.text
        assert r.json()["matches"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert r.json()["timings"]["batch_size"] >= 1
    # the service stored the merged vector, which is not the whole-walk one
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            stored = session.scalars(select(Template)).one()
            vector = np.frombuffer(stored.embedding, np.float32)
    finally:
        db.dispose()
    assert np.allclose(vector, expected, atol=1e-5)
    assert not np.allclose(vector, whole, atol=1e-3)
