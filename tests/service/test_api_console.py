"""Issue 27's API additions for the console: the caller's own key, a preview of an upload,
the model and its DET picture, and the console's files with their security headers."""

from __future__ import annotations

import base64
import io
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gaitid.service import console
from gaitid.service.config import Settings
from gaitid.service.model import det_picture_path
from gaitid.service.walks.inference import Embedder
from tests.utils import clips
from tests.utils.service_app import assert_error, headers, npz_upload, running

#: The console's API is the same on both databases; SQLite is enough here.
SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@SQLITE
def test_own_key_says_scopes_and_galleries(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        for scope in ("identify", "enroll", "admin"):
            r = client.get("/me", headers=headers(keys[scope]))
            assert r.status_code == 200, r.text
            assert r.json()["scopes"] == [scope] and r.json()["galleries"] is None
            assert r.json()["name"] == f"test-{scope}"
        created = client.post(
            "/keys",
            headers=headers(keys["admin"]),
            json={"name": "north-cams", "scopes": ["identify", "enroll"], "galleries": ["north"]},
        ).json()
        r = client.get("/me", headers=headers(created["key"]))
        assert r.json() == {
            "id": created["id"],
            "name": "north-cams",
            "scopes": ["enroll", "identify"],
            "galleries": ["north"],
        }
        assert_error(client.get("/me"), 401, "unauthenticated")
        assert_error(client.get("/me", headers=headers("gid_nope")), 401)


@SQLITE
def test_preview_reads_silhouettes_without_storing(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        for scope in ("identify", "enroll"):
            r = client.post("/preview", headers=headers(keys[scope]), files={"file": npz_upload(1)})
            assert r.status_code == 200, r.text
        body = r.json()
        read = {key: body["input"][key] for key in ("kind", "frames_seen", "frames_used")}
        assert read == {"kind": "silhouettes", "frames_seen": 12, "frames_used": 12}
        assert body["input"]["frames_dropped"] == 0 and body["input"]["dropped"] == {}
        assert body["frames_used"] == 12
        prefix = "data:image/png;base64,"
        assert body["strip"].startswith(prefix)
        image = Image.open(io.BytesIO(base64.b64decode(body["strip"].removeprefix(prefix))))
        assert image.size == (body["strip_width"], body["strip_height"])
        assert body["strip_height"] == 128  # one row: the final silhouettes
        stats = client.get("/stats", headers=headers(keys["admin"])).json()
        assert stats["identities"] == 0 and stats["templates"] == 0


@SQLITE
def test_preview_of_footage_shows_masks_and_drops(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    clip = clips.encode_mp4(clips.crossing_clip(seed=1).frames)
    with running(settings, embedder) as client:
        r = client.post(
            "/preview",
            headers=headers(keys["enroll"]),
            files={"file": ("clip.mp4", clip, "video/mp4")},
            data={"input": "video"},
        )
        assert r.status_code == 200, r.text
        report = r.json()["input"]
        assert report["kind"] == "video" and report["frames_seen"] == 60
        assert report["frames_dropped"] == sum(report["dropped"].values()) > 0
        # frame with the person tinted, mask, silhouette, dropped frames: four rows
        assert r.json()["strip_height"] == 4 * 128


@SQLITE
def test_preview_of_several_people_lists_them_and_shows_one_or_all(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """Issue 26's clips: the preview says who was seen, so the operator can pick a track."""
    red, blue = (200, 70, 60), (60, 80, 200)
    walkers = [
        clips.Walker(clips.walker_masks(70, seed=1), 0.1, 0.9, person_height=0.5, ground=0.92,
                     colour=red),
        clips.Walker(clips.walker_masks(60, seed=2), 0.9, 0.2, start=5, person_height=0.4,
                     ground=0.8, colour=blue),
    ]  # fmt: skip
    clip = clips.encode_mp4(clips.people_clip(walkers, 75, height=240, width=320).frames)
    with running(settings, embedder) as client:

        def preview(**fields: str) -> dict[str, Any]:
            r = client.post(
                "/preview",
                headers=headers(keys["enroll"]),
                files={"file": ("two.mp4", clip, "video/mp4")},
                data=fields,
            )
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

        one = preview()
        assert one["input"]["people"] == 2
        assert [t["track"] for t in one["input"]["tracks"]] == [1, 2]
        assert one["input"]["track"]["track"] in (1, 2)
        second = preview(track="2")
        assert second["input"]["track"]["track"] == 2
        everyone = preview(people="all")
        assert everyone["input"]["track"] is None and everyone["input"]["people"] == 2
        # frames with both people tinted, then a row of silhouettes per person
        assert everyone["strip_height"] == 3 * 128
        r = client.post(
            "/preview",
            headers=headers(keys["enroll"]),
            files={"file": ("two.mp4", clip, "video/mp4")},
            data={"people": "all", "track": "1"},
        )
        assert_error(r, 422, "invalid_request")


@SQLITE
def test_preview_errors_are_those_of_any_upload(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 2000})
    with running(small, embedder) as client:
        key = headers(keys["identify"])
        r = client.post("/preview", headers=key, files={"file": ("x.npz", b"not a walk")})
        assert_error(r, 422, "invalid_upload")
        r = client.post("/preview", headers=key, files={"file": ("x.bin", b"x" * 3000)})
        assert_error(r, 413, "upload_too_large")
        r = client.post("/preview", headers=key, files={"file": npz_upload(1, frames=2)})
        assert_error(r, 422, "too_few_frames")  # 2 frames of 4 (424 bytes: under the cap)
        r = client.post("/preview", files={"file": npz_upload(1)})
        assert_error(r, 401, "unauthenticated")


@SQLITE
def test_model_and_its_det_picture(
    settings: Settings, embedder: Embedder, keys: dict[str, str], tmp_path: Path
) -> None:
    with running(settings, embedder) as client:
        r = client.get("/model", headers=headers(keys["identify"]))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["version"] == embedder.info.version
        assert body["sha256"] == embedder.info.sha256
        assert body["embedding_dim"] == embedder.info.embedding_dim
        assert body["test_time_shifts"] == embedder.info.test_time_shifts == "cross"
        if embedder.info.default_threshold is None:
            assert body["threshold_source"] == "fallback"
            assert body["threshold"] == settings.fallback_threshold
        else:
            assert body["threshold_source"] == "model"
            assert body["threshold"] == embedder.info.default_threshold
        assert body["det_picture"] is False  # the test model has no card
        assert_error(client.get("/model/det.png", headers=headers(keys["enroll"])), 404)
        assert_error(client.get("/model"), 401)
    # a model file with its picture beside it: name up to the first '.', plus -det.png
    model = tmp_path / "m" / "card.int8.onnx"
    model.parent.mkdir()
    shutil.copyfile(embedder.model_path, model)
    picture = det_picture_path(model)
    assert picture.name == "card-det.png"
    Image.new("RGB", (4, 3)).save(picture)
    other = Embedder(model, device="cpu", intra_op_threads=1)
    with running(settings.model_copy(update={"model_path": model}), other) as client:
        assert client.get("/model", headers=headers(keys["admin"])).json()["det_picture"]
        r = client.get("/model/det.png", headers=headers(keys["admin"]))
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == picture.read_bytes()


def test_the_shipped_model_has_its_det_picture() -> None:
    root = Path(__file__).resolve().parents[2]
    assert det_picture_path(root / "models" / "gaitid-lmgcs.onnx").is_file()
    assert det_picture_path(root / "models" / "gaitid-lmgcs.int8.onnx").is_file()


@SQLITE
def test_console_files_are_packaged_and_served_with_a_strict_policy(
    settings: Settings, embedder: Embedder
) -> None:
    package = resources.files("gaitid.service.console")
    for name in console.ASSETS:
        assert package.joinpath(name).is_file(), name
    with running(settings, embedder) as client:
        page = client.get("/console")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe" not in policy
        assert "connect-src 'self'" in policy and "default-src 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert b"<script" in page.content and b"<script>" not in page.content
        script = client.get("/console/console.js")
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.headers["content-security-policy"] == policy
        assert client.get("/console/console.css").status_code == 200
        head = client.head("/console")
        assert head.status_code == 200 and head.headers["content-security-policy"] == policy
        assert client.head("/console/console.js").status_code == 200
        for missing in ("nothing.js", "..%2fapp.py", "__init__.py"):
            assert_error(client.get(f"/console/{missing}"), 404)
        # the console is not part of the API document
        paths = client.get("/openapi.json").json()["paths"]
        assert not any(path.startswith("/console") for path in paths)
