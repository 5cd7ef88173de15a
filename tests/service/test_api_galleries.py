"""Issue 15: galleries as resources, keys bound to galleries, search options, offline docs,
an OpenAPI document whose limits and error codes are the server's. Both backends."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gaitid.service.config import Settings
from gaitid.service.errors import _CODES, _HTTP_CODES, ERROR_CODES, ServiceError
from gaitid.service.walks.inference import Embedder
from tests.utils.service_app import assert_error, enroll, headers, identify, npz_upload, running


def _create_key(client: TestClient, admin: str, scopes: list[str], galleries: list[str]) -> str:
    created = client.post(
        "/keys",
        headers=headers(admin),
        json={"name": "site", "scopes": scopes, "galleries": galleries},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["galleries"] == sorted(galleries) and body["key"].startswith("gid_")
    return str(body["key"])


def test_galleries_are_resources(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    admin = headers(keys["admin"])
    with running(settings, embedder) as client:
        made = client.post(
            "/galleries",
            headers=admin,
            json={"name": "north", "default_threshold": 0.6, "metadata": {"site": "N"}},
        )
        assert made.status_code == 201, made.text
        assert made.json()["metadata"] == {"site": "N"} and made.json()["identities"] == 0
        assert_error(client.post("/galleries", headers=admin, json={"name": "north"}), 409)
        assert_error(client.post("/galleries", headers=admin, json={"name": "../x"}), 422)
        assert_error(
            client.post("/galleries", headers=headers(keys["enroll"]), json={"name": "x"}), 403
        )
        ann = enroll(client, keys["enroll"], "ann", seed=1, gallery="north").json()
        enroll(client, keys["enroll"], "ben", seed=2, gallery="north")
        enroll(client, keys["enroll"], "cid", seed=3, gallery="south")
        one = client.get("/galleries/north", headers=headers(keys["enroll"])).json()
        assert (one["identities"], one["templates"], one["default_threshold"]) == (2, 2, 0.6)
        changed = client.patch("/galleries/north", headers=admin, json={"metadata": {"k": 1}})
        assert changed.json()["metadata"] == {"k": 1} and changed.json()["default_threshold"] == 0.6
        # erasing the gallery erases its people, in SQL and in the index
        assert client.delete("/galleries/north", headers=admin).status_code == 204
        assert_error(client.get("/galleries/north", headers=admin), 404)
        assert_error(client.delete("/galleries/north", headers=admin), 404)
        assert_error(client.get(f"/identities/{ann['identity_id']}", headers=admin), 404)
        assert identify(client, keys["identify"], seed=3, top_k=5).status_code == 404
        south = client.post(
            "/identify",
            headers=headers(keys["identify"]),
            files={"file": npz_upload(1)},
            data={"gallery": "south", "top_k": "5"},
        ).json()
        assert [m["identity"] for m in south["matches"]] == ["cid"]
        check = client.get("/admin/index/check", headers=admin).json()
        assert check["consistent"] and check["db_templates"] == 1
        names = [g["name"] for g in client.get("/galleries", headers=admin).json()]
        assert names == ["south"]


def test_a_key_bound_to_one_gallery_cannot_touch_another(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    with running(settings, embedder) as client:
        north_id = enroll(client, keys["enroll"], "ann", seed=1, gallery="north").json()
        south_id = enroll(client, keys["enroll"], "cid", seed=3, gallery="south").json()
        bound = _create_key(client, keys["admin"], ["admin"], ["north"])
        key = headers(bound)
        # its own gallery works
        assert enroll(client, bound, "ben", seed=2, gallery="north").status_code == 201
        assert identify(client, bound, seed=1, gallery="north").status_code == 200
        # the other gallery: 403 on every endpoint
        assert_error(enroll(client, bound, "eve", seed=4, gallery="south"), 403, "forbidden")
        assert_error(identify(client, bound, seed=1, gallery="south"), 403)
        verify = client.post(
            "/verify",
            headers=key,
            files={"file": npz_upload(3)},
            data={"identity_id": str(south_id["identity_id"]), "gallery": "south"},
        )
        assert_error(verify, 403)
        sid = south_id["identity_id"]
        assert_error(client.get(f"/identities/{sid}", headers=key), 403)
        assert_error(client.patch(f"/identities/{sid}", headers=key, json={"name": "z"}), 403)
        assert_error(client.delete(f"/identities/{sid}", headers=key), 403)
        assert_error(client.delete(f"/templates/{south_id['template_id']}", headers=key), 403)
        assert_error(client.get("/identities?gallery=south", headers=key), 403)
        assert_error(client.get("/galleries/south", headers=key), 403)
        assert_error(client.patch("/galleries/south", headers=key, json={}), 403)
        assert_error(client.delete("/galleries/south", headers=key), 403)
        assert_error(client.post("/galleries", headers=key, json={"name": "west"}), 403)
        # listings and stats show its gallery only
        assert [g["name"] for g in client.get("/galleries", headers=key).json()] == ["north"]
        listed = client.get("/identities", headers=key).json()["items"]
        assert {i["gallery"] for i in listed} == {"north"}
        stats = client.get("/stats", headers=key).json()
        assert (stats["galleries"], stats["identities"], stats["templates"]) == (1, 2, 2)
        # what spans every gallery is refused
        assert_error(client.get("/admin/index/check", headers=key), 403)
        assert_error(client.get("/keys", headers=key), 403)
        assert client.get(f"/identities/{north_id['identity_id']}", headers=key).status_code == 200


def test_keys_over_http(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    admin = headers(keys["admin"])
    with running(settings, embedder) as client:
        key = _create_key(client, keys["admin"], ["identify"], ["north"])
        listed = client.get("/keys", headers=admin).json()
        assert all("key" not in row for row in listed)
        mine = next(row for row in listed if row["galleries"] == ["north"])
        assert mine["scopes"] == ["identify"]
        assert client.delete(f"/keys/{mine['id']}", headers=admin).status_code == 204
        assert_error(identify(client, key, seed=1, gallery="north"), 401)
        assert_error(client.delete("/keys/999999", headers=admin), 404)
        # issue 28: a key cannot revoke itself (a client walking the API locked itself out)
        admin_id = next(row["id"] for row in listed if row["name"] == "test-admin")
        assert_error(client.delete(f"/keys/{admin_id}", headers=admin), 409, "conflict")
        assert client.get("/keys", headers=admin).status_code == 200
        bad = client.post(
            "/keys", headers=admin, json={"name": "x", "scopes": ["root"], "galleries": []}
        )
        assert_error(bad, 422)
        odd = client.post(
            "/keys", headers=admin, json={"name": "x", "scopes": ["admin"], "galleries": ["a b"]}
        )
        assert_error(odd, 422)
        assert_error(client.get("/keys", headers=headers(keys["enroll"])), 403)


def test_galleries_can_be_required_to_exist(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    strict = settings.model_copy(update={"implicit_galleries": False})
    with running(strict, embedder) as client:
        missing = enroll(client, keys["enroll"], "ann", seed=1, gallery="north")
        assert "POST /galleries" in assert_error(missing, 404)["message"]
        client.post("/galleries", headers=headers(keys["admin"]), json={"name": "north"})
        assert enroll(client, keys["enroll"], "ann", seed=1, gallery="north").status_code == 201


def test_identify_min_score_and_metadata_filter(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    admin = headers(keys["admin"])
    with running(settings, embedder) as client:
        sites = {"ann": "north", "ben": "south", "cid": "north", "dot": "north", "eve": "south"}
        for seed, (name, site) in enumerate(sites.items(), start=1):
            made = enroll(client, keys["enroll"], name, seed=seed).json()
            meta = {"site": site, "floor": seed}
            patched = client.patch(
                f"/identities/{made['identity_id']}", headers=admin, json={"metadata": meta}
            )
            assert patched.status_code == 200
        north = identify(client, keys["identify"], seed=2, top_k=3, filter='{"site": "north"}')
        assert north.status_code == 200, north.text
        found = [m["identity"] for m in north.json()["matches"]]
        assert len(found) == 3 and set(found) == {"ann", "cid", "dot"}  # ben (the probe) excluded
        both = identify(client, keys["identify"], seed=1, filter='{"site": "north", "floor": 1}')
        assert [m["identity"] for m in both.json()["matches"]] == ["ann"]
        none = identify(client, keys["identify"], seed=1, filter='{"site": "west"}')
        assert none.json()["matches"] == [] and none.json()["decision"] == "unknown"
        everyone = identify(client, keys["identify"], seed=1, top_k=5, min_score=-1).json()
        scores = [m["score"] for m in everyone["matches"]]
        assert len(scores) == 5
        cut = (scores[1] + scores[2]) / 2  # between the second and the third best
        strict = identify(client, keys["identify"], seed=1, top_k=5, min_score=cut).json()
        assert [m["score"] for m in strict["matches"]] == scores[:2]
        for bad in ("[1]", "{bad json", '{"a": NaN}'):
            assert_error(identify(client, keys["identify"], seed=1, filter=bad), 422)
        assert_error(identify(client, keys["identify"], seed=1, min_score=2), 422)


def test_docs_render_offline(settings: Settings, embedder: Embedder) -> None:
    with running(settings, embedder) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        external = re.findall(r"""(?:src|href)=["'](https?:[^"']+)""", page.text)
        assert external == [], external
        assets = re.findall(r"""(?:src|href)=["'](/[^"']+)""", page.text)
        assert assets and all(client.get(a).status_code == 200 for a in assets)
        assert "swagger-ui-bundle.js" in page.text
        assert '"validatorUrl": null' in page.text  # Swagger UI's online validator is off
        assert client.get("/redoc").status_code == 404


def test_openapi_limits_are_the_servers(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    small = settings.model_copy(update={"max_top_k": 7})
    with running(small, embedder) as client:
        schema = client.get("/openapi.json").json()
        body = schema["paths"]["/identify"]["post"]["requestBody"]["content"]
        ref = body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[-1]
        maximum = schema["components"]["schemas"][ref]["properties"]["top_k"]["maximum"]
        assert maximum == 7
        enroll(client, keys["enroll"], "ann", seed=1)
        assert identify(client, keys["identify"], seed=1, top_k=maximum).status_code == 200
        assert_error(identify(client, keys["identify"], seed=1, top_k=maximum + 1), 422)
        codes = schema["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
        assert codes == sorted(ERROR_CODES)
        for code in ERROR_CODES:
            assert f"`{code}`" in schema["info"]["description"]


def test_every_error_code_is_documented() -> None:
    produced = set(_CODES.values()) | set(_HTTP_CODES.values())
    produced |= {"validation_error", "internal_error", "invalid_sequence", "http_error"}
    produced |= {c.code for c in _subclasses(ServiceError)}
    assert produced <= set(ERROR_CODES), sorted(produced - set(ERROR_CODES))


def _subclasses(cls: type) -> set[Any]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def test_every_operation_has_an_example(settings: Settings, embedder: Embedder) -> None:
    with running(settings, embedder) as client:
        schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]

    def has_example(node: dict[str, Any]) -> bool:
        if "examples" in node or "example" in node:
            return True
        if "$ref" in node:
            return has_example(components[node["$ref"].rsplit("/", 1)[-1]])
        if node.get("type") == "array":
            return has_example(node["items"])
        return False

    missing = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            ok = {k: v for k, v in operation["responses"].items() if k.startswith("2")}
            content = [v.get("content", {}) for v in ok.values()]
            bodies = [c["application/json"]["schema"] for c in content if "application/json" in c]
            if bodies and not any(has_example(b) for b in bodies):
                missing.append(f"{method.upper()} {path}")
    assert missing == [], missing


@pytest.mark.parametrize("backend", ["replicas"])
def test_erasing_a_gallery_reaches_every_replica(
    settings: Settings, embedder: Embedder, keys: dict[str, str], backend: str
) -> None:
    slow = settings.model_copy(update={"replication_poll_s": 60.0, "replication_listen": False})
    with running(slow, embedder) as a, running(slow, embedder) as b:
        enroll(a, keys["enroll"], "ann", seed=1, gallery="north")
        enroll(a, keys["enroll"], "ben", seed=2, gallery="north")
        state_b = b.app.state.service
        state_b.indexes.catch_up()
        assert len(state_b.indexes) == 2
        assert a.delete("/galleries/north", headers=headers(keys["admin"])).status_code == 204
        state_b.indexes.catch_up()
        assert len(state_b.indexes) == 0 and state_b.indexes.check().consistent
        assert_error(identify(b, keys["identify"], seed=1, gallery="north"), 404)
