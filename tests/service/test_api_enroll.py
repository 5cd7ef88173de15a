"""POST /enroll: creation, idempotence, fields, storage of frames, upload errors."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from sqlalchemy import select

from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.models import AuditLog, Template
from gaitid.service.walks.inference import Embedder
from tests.utils import uploads
from tests.utils.service_app import (
    assert_error,
    enroll,
    headers,
    npy_bytes,
    npz_upload,
    running,
    walk,
)


def _templates(settings: Settings) -> list[Template]:
    db = Database(settings.resolved_database_url)
    try:
        with db.session() as session:
            return list(session.scalars(select(Template).order_by(Template.id)))
    finally:
        db.dispose()


def test_enroll_creates_identity_and_template(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        r = enroll(
            client,
            keys["enroll"],
            "alice",
            seed=1,
            view="090",
            condition="nm-01",
            metadata=json.dumps({"camera": "lobby"}),
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["identity"] == "alice" and body["gallery"] == "default"
        assert body["created"] is True
        assert body["frames_used"] == 12 and body["frames_total"] == 12
        assert body["model_version"] == embedder.info.version
        assert body["timings"]["total_ms"] > 0
        detail = client.get(
            f"/identities/{body['identity_id']}", headers=headers(keys["enroll"])
        ).json()
        (template,) = detail["template_list"]
        assert template["id"] == body["template_id"]
        assert (template["view"], template["condition"]) == ("090", "nm-01")
        assert template["metadata"] == {"camera": "lobby"}
        assert template["stale"] is False
    (row,) = _templates(settings)
    vector = np.frombuffer(row.embedding, "<f4")
    assert vector.shape == (256,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    assert row.model_sha256 == embedder.info.sha256
    assert row.silhouettes is None  # not stored unless enabled


def test_same_content_twice_returns_existing_template(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        first = enroll(client, keys["enroll"], "alice", seed=1)
        again = enroll(client, keys["enroll"], "alice", seed=1)
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["created"] is False
        assert again.json()["template_id"] == first.json()["template_id"]
        other = enroll(client, keys["enroll"], "bob", seed=1)  # same bytes, other person
        assert other.status_code == 201
        assert other.json()["template_id"] != first.json()["template_id"]
        second_walk = enroll(client, keys["enroll"], "alice", seed=2)
        assert second_walk.status_code == 201
        assert second_walk.json()["identity_id"] == first.json()["identity_id"]
    assert len(_templates(settings)) == 3


def test_galleries_are_separate(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        a = enroll(client, keys["enroll"], "alice", seed=1, gallery="site-a")
        b = enroll(client, keys["enroll"], "alice", seed=1, gallery="site-b")
        assert a.status_code == b.status_code == 201
        assert a.json()["identity_id"] != b.json()["identity_id"]
        r = client.post(
            "/identify",
            headers=headers(keys["identify"]),
            files={"file": npz_upload(1)},
            data={"gallery": "site-a"},
        )
        assert [m["identity_id"] for m in r.json()["matches"]] == [a.json()["identity_id"]]


def test_store_silhouettes_when_enabled(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    stored = settings.model_copy(update={"store_silhouettes": True})
    with running(stored, embedder) as client:
        assert enroll(client, keys["enroll"], "alice", seed=1).status_code == 201
    (row,) = _templates(settings)
    assert row.silhouettes is not None
    import io

    frames = np.load(io.BytesIO(row.silhouettes))["silhouettes"]
    assert frames.shape == (12, 64, 44) and frames.dtype == np.uint8


def test_enroll_is_audited(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    with running(settings, embedder) as client:
        enroll(client, keys["enroll"], "alice", seed=1)
        enroll(client, keys["enroll"], "alice", seed=1)
    db = Database(settings.resolved_database_url)
    with db.session() as session:
        rows = list(
            session.scalars(
                select(AuditLog).where(AuditLog.action == "enroll").order_by(AuditLog.id)
            )
        )
    db.dispose()
    assert [r.detail for r in rows] == [{"created": True}, {"created": False}]
    assert all(r.api_key_id is not None and r.template_id is not None for r in rows)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"identity": ""}, "identity"),
        ({"identity": "x" * 257}, "identity"),
        ({"identity": "a\x00b"}, "identity"),
        ({"identity": "alice", "gallery": "bad gallery!"}, "gallery"),
        ({"identity": "alice", "view": "v" * 65}, "view"),
        ({"identity": "alice", "metadata": "{not json"}, None),
        ({"identity": "alice", "metadata": "[1, 2]"}, None),
        ({"identity": "alice", "metadata": '{"a": NaN}'}, None),
        ({"identity": "alice", "metadata": '{"a": "\\u0000"}'}, None),
        ({"identity": "alice", "metadata": '{"a": ' + "9" * 5000 + "}"}, "64 bits"),
        ({}, "identity"),
    ],
)
def test_invalid_fields_are_422(
    settings: Settings,
    embedder: Embedder,
    keys: dict[str, str],
    data: dict[str, str],
    field: str | None,
) -> None:
    with running(settings, embedder) as client:
        r = client.post(
            "/enroll", headers=headers(keys["enroll"]), files={"file": npz_upload(1)}, data=data
        )
        error = assert_error(r, 422)
        if field is not None:
            assert field in error["message"]
    assert _templates(settings) == []


def test_missing_file_is_422(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    with running(settings, embedder) as client:
        r = client.post("/enroll", headers=headers(keys["enroll"]), data={"identity": "alice"})
        assert "file" in assert_error(r, 422, "validation_error")["message"]


@functools.cache
def _malformed() -> dict[str, bytes]:
    """One of each malformed upload from the foundation issue's list."""
    import tarfile

    good = walk(1)
    link = tarfile.TarInfo("frame0.png")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    return {
        "empty": b"",
        "unknown-format": b"hello, this is not a walk",
        "corrupt-zip": uploads.encode_zip(good)[:200],
        "zip-traversal": uploads.zip_with_members({"../evil.png": uploads.encode_image(good[0])}),
        "zip-absolute": uploads.zip_with_members({"/abs.png": uploads.encode_image(good[0])}),
        "zip-unreadable-member": uploads.zip_with_members({"f0.png": b"not a png"}),
        "tar-symlink": uploads.tar_with([link]),
        "npy-object": uploads.npy_with_header(
            "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }"
        ),
        "npy-complex": npy_bytes(np.zeros((3, 8, 8), np.complex64)),
        "npy-structured": npy_bytes(np.zeros((3, 8, 8), dtype=[("a", "u1"), ("b", "u1")])),
        "npy-1d": npy_bytes(np.zeros(10, np.uint8)),
        "npy-zero-frames": npy_bytes(np.zeros((0, 64, 44), np.uint8)),
        "npy-nan": npy_bytes(np.full((5, 64, 44), np.nan, np.float32)),
        "npy-inf": npy_bytes(np.full((5, 64, 44), np.inf, np.float32)),
        "npy-truncated": npy_bytes(good)[:100],
        "npy-lying-shape": uploads.npy_with_header(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (100000, 100000, 100000), }"
        ),
        "blank-frames": npy_bytes(np.zeros((10, 64, 44), np.uint8)),
        "tiff-garbage": b"II*\x00" + b"\x00" * 64,
        "video-garbage": b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 200,
        "avi-garbage": b"RIFF\x00\x01\x00\x00AVI LIST" + b"\x02" * 200,
        "zip-bomb": uploads.zip_bomb(5 * 1024 * 1024),
        "zip-lying-size": uploads.zip_lying_about_size(3 * 1024 * 1024, 1000),
        "huge-frame": uploads.encode_image(np.zeros((2000, 2000), np.uint8)),
    }


@pytest.mark.parametrize("name", sorted(_malformed()))
def test_malformed_uploads_get_4xx_json(
    settings: Settings, embedder: Embedder, keys: dict[str, str], name: str
) -> None:
    data = _malformed()[name]
    with running(settings, embedder) as client:
        for route, fields in (("/enroll", {"identity": "alice"}), ("/identify", {})):
            r = client.post(
                route, headers=headers(keys["admin"]), files={"file": (name, data)}, data=fields
            )
            if route == "/identify" and r.status_code == 404:
                continue  # empty gallery: checked before decoding
            assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
            assert_error(r, r.status_code)
    assert _templates(settings) == []


def test_too_few_frames_details(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        r = enroll(client, keys["enroll"], "alice", seed=1, frames=2)
        error = assert_error(r, 422, "too_few_frames")
        assert error["details"]["usable"] == 2 and error["details"]["required"] == 4


def test_upload_over_limit_is_413(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 4096})
    big = ("big.npy", npy_bytes(np.zeros((4, 64, 44), np.uint8)), "application/octet-stream")
    assert len(big[1]) > 4096
    with running(small, embedder) as client:
        r = client.post(
            "/enroll", headers=headers(keys["enroll"]), files={"file": big}, data={"identity": "a"}
        )
        assert_error(r, 413, "upload_too_large")
        huge = ("huge.npy", b"\x00" * 200_000, "application/octet-stream")
        r = client.post(
            "/enroll", headers=headers(keys["enroll"]), files={"file": huge}, data={"identity": "a"}
        )
        assert_error(r, 413, "request_too_large")


def test_decode_limits_are_413(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    limited = settings.model_copy(update={"max_frames": 10})
    with running(limited, embedder) as client:
        r = enroll(client, keys["enroll"], "alice", seed=1, frames=11)
        assert_error(r, 413, "upload_too_large")


def test_streamed_body_over_cap_is_413(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """A chunked body (no Content-Length) is cut off at the cap while it streams."""
    small = settings.model_copy(update={"max_upload_bytes": 4096, "form_overhead_bytes": 1024})

    def chunks():  # type: ignore[no-untyped-def]
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.npy"\r\n\r\n'
        for _ in range(100):
            yield b"\x00" * 1024

    with running(small, embedder) as client:
        r = client.post(
            "/enroll",
            headers={**headers(keys["enroll"]), "Content-Type": "multipart/form-data; boundary=b"},
            content=chunks(),
        )
        assert_error(r, 413, "request_too_large")


def test_names_are_normalised_and_unprintable_ones_refused(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """Issue 14, item 7: NFC and trimmed; control/format characters get a 422 naming them."""
    import unicodedata

    with running(settings, embedder) as client:
        nfc = enroll(client, keys["enroll"], unicodedata.normalize("NFC", "Zoë"), seed=1).json()
        nfd = enroll(client, keys["enroll"], unicodedata.normalize("NFD", "  Zoë "), seed=2)
        assert nfd.status_code == 201, nfd.text
        assert nfd.json()["identity_id"] == nfc["identity_id"]  # the same person
        assert nfd.json()["identity"] == "Zoë"
        for bad, named in [
            ("evil\u202egpj.exe", "U+202E"),  # right-to-left override
            ("line\u2028break", "U+2028"),
            ("c1\u0085control", "U+0085"),
            ("zero\u200bwidth", "U+200B"),
            ("   ", "whitespace"),
        ]:
            error = assert_error(enroll(client, keys["enroll"], bad, seed=3), 422)
            assert named in error["message"] and "identity" in error["message"]


def test_names_that_are_not_utf8_are_refused(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """Issue 14, item 7: invalid UTF-8 is a 422 naming the field, never stored as mojibake;
    a client that declares latin-1 is decoded as latin-1."""

    def form(name: bytes, charset: str | None = None) -> tuple[bytes, str]:
        _, upload, _ = npz_upload(1)
        body = (
            b'--b\r\nContent-Disposition: form-data; name="identity"\r\n\r\n'
            + name
            + b'\r\n--b\r\nContent-Disposition: form-data; name="file"; filename="w.npz"'
            b"\r\nContent-Type: application/octet-stream\r\n\r\n" + upload + b"\r\n--b--\r\n"
        )
        declared = f"; charset={charset}" if charset else ""
        return body, f"multipart/form-data; boundary=b{declared}"

    with running(settings, embedder) as client:
        for raw in (b"Jos\xe9", b"\xff\xfeann", b"ann\xc3"):
            body, content_type = form(raw)
            r = client.post(
                "/enroll",
                headers={**headers(keys["enroll"]), "Content-Type": content_type},
                content=body,
            )
            error = assert_error(r, 422, "invalid_request")
            assert "'identity'" in error["message"] and "UTF-8" in error["message"]
        body, content_type = form("José".encode(), None)
        ok = client.post(
            "/enroll",
            headers={**headers(keys["enroll"]), "Content-Type": content_type},
            content=body,
        )
        assert ok.status_code == 201 and ok.json()["identity"] == "José", ok.text
        body, content_type = form(b"Jos\xe9", "latin-1")
        same = client.post(
            "/enroll",
            headers={**headers(keys["enroll"]), "Content-Type": content_type},
            content=body,
        )
        assert same.status_code in (200, 201), same.text  # the same walk again: not a new one
        assert same.json()["identity_id"] == ok.json()["identity_id"]


def test_an_oversized_form_field_is_413_json(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """Issue 14, item 8: a 1 MB metadata field is the documented JSON 413, not a parser 400."""
    with running(settings, embedder) as client:
        r = client.post(
            "/enroll",
            headers=headers(keys["enroll"]),
            files={"file": npz_upload(1)},
            data={"identity": "alice", "metadata": '{"a": "' + "x" * 1_100_000 + '"}'},
        )
        assert "KiB" in assert_error(r, 413, "request_too_large")["message"]
    assert _templates(settings) == []
