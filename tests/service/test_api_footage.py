"""Issue 13 through the API: camera clips are segmented, photos and empty clips refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaitid.service.config import Settings
from gaitid.service.walks.inference import Embedder
from tests.utils import clips, uploads
from tests.utils.service_app import assert_error, headers, running


def _post(client, path: str, key: str, data: bytes, **fields: str):  # type: ignore[no-untyped-def]
    files = {"file": ("clip.mp4", data, "video/mp4")}
    scene = fields.pop("background_png", None)
    if scene is not None:
        files["background"] = ("scene.png", scene, "image/png")  # type: ignore[assignment]
    return client.post(path, headers=headers(key), files=files, data=fields)


def test_a_camera_clip_is_enrolled_and_identified(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    clip = clips.encode_mp4(clips.crossing_clip(seed=1).frames)
    with running(settings, embedder) as client:
        enrolled = _post(client, "/enroll", keys["enroll"], clip, identity="walker")
        assert enrolled.status_code == 201, enrolled.text
        report = enrolled.json()["input"]
        assert report["kind"] == "video" and report["frames_seen"] == 60
        assert report["frames_used"] == enrolled.json()["frames_used"] >= 30
        assert report["dropped"]["cut_by_border"] > 0
        found = _post(client, "/identify", keys["identify"], clip)
        assert found.status_code == 200, found.text
        assert found.json()["matches"][0]["identity"] == "walker"
        assert found.json()["input"]["kind"] == "video"
        masks = uploads.encode_npz(uploads.walking_masks(12))
        plain = client.post(
            "/identify",
            headers=headers(keys["identify"]),
            files={"file": ("walk.npz", masks, "application/octet-stream")},
        )
        assert plain.json()["input"]["kind"] == "silhouettes"


def test_footage_without_a_walking_person_is_never_2xx(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    scene = clips.crossing_clip(frames=24, seed=5)
    photo = uploads.encode_image(scene.frames[10], "JPEG")
    empty = np.stack([scene.empty_scene] * 24)
    with running(settings, embedder) as client:
        masks = uploads.encode_npz(uploads.walking_masks(12))
        assert _post(client, "/enroll", keys["enroll"], masks, identity="m").status_code == 201
        for name, data in [("photo.jpg", photo), ("empty.mp4", clips.encode_mp4(empty))]:
            for path, key, fields in [
                ("/enroll", keys["enroll"], {"identity": "nobody"}),
                ("/identify", keys["identify"], {}),
            ]:
                response = client.post(
                    path,
                    headers=headers(key),
                    files={"file": (name, data, "application/octet-stream")},
                    data=fields,
                )
                error = assert_error(response, 422, "no_person_found")
                assert "walking person" in error["message"]


def test_walking_towards_the_camera_needs_the_background_field(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    clip = clips.crossing_clip(seed=4, towards_camera=True)
    data = clips.encode_mp4(clip.frames)
    with running(settings, embedder) as client:
        missing = _post(client, "/enroll", keys["enroll"], data, identity="approacher")
        assert_error(missing, 422, "background_needed")
        scene = uploads.encode_image(clip.empty_scene)
        given = _post(
            client, "/enroll", keys["enroll"], data, identity="approacher", background_png=scene
        )
        assert given.status_code == 201, given.text
        assert given.json()["input"]["frames_used"] == 60


def test_the_input_field(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    clip = clips.encode_mp4(clips.crossing_clip(frames=24, seed=1).frames)
    with running(settings, embedder) as client:
        bad = _post(client, "/identify", keys["identify"], clip, input="photo")
        assert_error(bad, 422, "validation_error")
        masks = uploads.encode_npz(uploads.walking_masks(12))
        enrolled = _post(
            client, "/enroll", keys["enroll"], masks, identity="m", input="silhouettes"
        )
        assert enrolled.status_code == 201 and enrolled.json()["input"]["kind"] == "silhouettes"
        not_a_picture = _post(
            client, "/identify", keys["identify"], clip, background_png=b"not an image"
        )
        assert_error(not_a_picture, 422, "invalid_upload")


def test_a_learned_segmenter_from_the_settings(
    settings: Settings, embedder: Embedder, keys: dict[str, str], tmp_path: Path
) -> None:
    """GAITID_SEGMENTER_PATH: footage is segmented by the ONNX model (no background needed)."""
    model = clips.red_person_onnx(tmp_path / "segmenter.onnx")
    learned = settings.model_copy(update={"segmenter_path": model})
    data = clips.encode_mp4(clips.crossing_clip(seed=4, towards_camera=True).frames)
    with running(learned, embedder) as client:
        enrolled = _post(client, "/enroll", keys["enroll"], data, identity="approacher")
        assert enrolled.status_code == 201, enrolled.text
        assert enrolled.json()["input"]["kind"] == "video"
