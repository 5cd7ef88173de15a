"""Several people in one clip through the API (issue 26): `people=all` identifies each,
enrol and verify take one person by `track`, people never apart are refused."""

from __future__ import annotations

from typing import Any

import pytest

from gaitid.service.config import Settings
from gaitid.service.walks.inference import Embedder
from tests.utils import clips
from tests.utils.service_app import assert_error, headers, running

RED, BLUE = (200, 70, 60), (60, 80, 200)


def _walkers(crossing: bool = True) -> list[clips.Walker]:
    near, far = clips.walker_masks(70, seed=1), clips.walker_masks(60, seed=2)
    if not crossing:  # side by side, the whole way
        far = clips.walker_masks(70, seed=2)
        return [
            clips.Walker(near, 0.1, 0.8, person_height=0.5, ground=0.9, colour=RED),
            clips.Walker(far, 0.17, 0.87, person_height=0.5, ground=0.91, colour=BLUE),
        ]
    return [
        clips.Walker(near, 0.1, 0.9, person_height=0.5, ground=0.92, colour=RED),
        clips.Walker(far, 0.9, 0.2, start=5, person_height=0.4, ground=0.8, colour=BLUE),
    ]


def _clip(walkers: list[clips.Walker], frames: int = 75) -> bytes:
    clip = clips.people_clip(walkers, frames, height=240, width=320)
    return clips.encode_mp4(clip.frames)


@pytest.fixture(scope="module")
def crossing() -> bytes:
    return _clip(_walkers())


@pytest.fixture(scope="module")
def alone() -> list[bytes]:
    """Each walker of the crossing clip filmed alone, in the same scene."""
    return [_clip([walker]) for walker in _walkers()]


def _post(client: Any, path: str, key: str, data: bytes, **fields: Any) -> Any:
    files = {"file": ("clip.mp4", data, "video/mp4")}
    return client.post(path, headers=headers(key), files=files, data=fields)


def test_every_person_of_a_clip_is_identified(
    settings: Settings,
    embedder: Embedder,
    keys: dict[str, str],
    crossing: bytes,
    alone: list[bytes],
) -> None:
    with running(settings, embedder) as client:
        for name, data in zip(("near", "far"), alone, strict=True):
            enrolled = _post(client, "/enroll", keys["enroll"], data, identity=name)
            assert enrolled.status_code == 201, enrolled.text
            assert enrolled.json()["input"]["people"] == 1
        found = _post(client, "/identify", keys["identify"], crossing, people="all")
        assert found.status_code == 200, found.text
        body = found.json()
        people = body["people"]
        assert [p["track"] for p in people] == [1, 2]
        assert [p["matches"][0]["identity"] for p in people] == ["near", "far"]
        for person in people:
            assert person["frames_used"] >= 20
            assert person["first_frame"] < person["last_frame"]
            box = person["box"]
            assert 0 <= box["x"] < 320 and 0 <= box["y"] < 240 and box["h"] > box["w"] > 0
            assert person["decision"] in ("match", "unknown")
        assert people[0]["first_frame"] < people[1]["first_frame"]  # order of appearance
        assert body["input"]["people"] == 2 and len(body["input"]["tracks"]) == 2
        # the top level answers for the person with the most usable frames
        main = max(people, key=lambda p: p["frames_used"])
        assert body["matches"] == main["matches"] and body["input"]["track"]["track"] == 1
        # people=one (the default): one answer, and it says how many people were seen
        one = _post(client, "/identify", keys["identify"], crossing)
        assert one.status_code == 200 and one.json()["people"] is None
        assert one.json()["input"]["people"] == 2
        assert one.json()["matches"][0]["identity"] == "near"
        chosen = _post(client, "/identify", keys["identify"], crossing, track=2)
        assert chosen.json()["matches"][0]["identity"] == "far"
        both = _post(client, "/identify", keys["identify"], crossing, people="all", track=1)
        assert_error(both, 422, "invalid_request")


def test_enrol_and_verify_take_one_person_by_track(
    settings: Settings, embedder: Embedder, keys: dict[str, str], crossing: bytes
) -> None:
    with running(settings, embedder) as client:
        refused = _post(client, "/enroll", keys["enroll"], crossing, identity="who")
        error = assert_error(refused, 422, "several_people")
        assert "track 1" in error["message"] and "track 2" in error["message"]
        assert "track=N" in error["message"]
        missing = _post(client, "/enroll", keys["enroll"], crossing, identity="who", track=3)
        assert (
            "track=3 is not in the clip" in assert_error(missing, 422, "several_people")["message"]
        )
        enrolled = _post(client, "/enroll", keys["enroll"], crossing, identity="far", track=2)
        assert enrolled.status_code == 201, enrolled.text
        assert enrolled.json()["input"]["track"]["track"] == 2
        identity_id = enrolled.json()["identity_id"]
        unsure = _post(client, "/verify", keys["identify"], crossing, identity_id=identity_id)
        assert_error(unsure, 422, "several_people")
        verified = _post(
            client, "/verify", keys["identify"], crossing, identity_id=identity_id, track=2
        )
        assert verified.status_code == 200, verified.text
        assert verified.json()["input"]["track"]["track"] == 2
        assert verified.json()["score"] > 0.99  # the very walk that was enrolled


def test_people_who_cannot_be_told_apart_are_refused(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    together = _clip(_walkers(crossing=False), frames=60)
    with running(settings, embedder) as client:
        client.post("/galleries", headers=headers(keys["admin"]), json={"name": "default"})
        for path, key, fields in [
            ("/enroll", keys["enroll"], {"identity": "pair"}),
            ("/enroll", keys["enroll"], {"identity": "pair", "track": 1}),
            ("/identify", keys["identify"], {"people": "all"}),
            ("/identify", keys["identify"], {}),
        ]:
            response = _post(client, path, key, together, **fields)
            error = assert_error(response, 422, "people_indistinct")
            assert "cannot be told apart" in error["message"]
