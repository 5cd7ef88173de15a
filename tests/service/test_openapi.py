"""The OpenAPI document: one error schema for every 4xx, examples.

That the server answers as the document says, 5xx included, is test_conformance.py's job.
"""

from __future__ import annotations

from typing import Any

import pytest

from gaitid.service.config import Settings
from gaitid.service.walks.inference import Embedder
from tests.utils.service_app import assert_error, enroll, headers, npz_upload, running


@pytest.fixture
def spec(settings: Settings, embedder: Embedder) -> dict[str, Any]:
    with running(settings, embedder) as client:
        return dict(client.get("/openapi.json").json())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_4xx_uses_the_one_error_schema(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.")
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    checked = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status.startswith("4"):
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorResponse", (method, path, status)
                    checked += 1
    assert checked > 30
    assert "examples" in schemas["ErrorResponse"]
    for name in ("EnrollResponse", "IdentifyResponse", "VerifyResponse", "ReadinessResponse"):
        assert schemas[name].get("examples"), name
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_document_says_what_the_server_takes(spec: dict[str, Any]) -> None:
    """Issue 28: no null a form cannot send, verify's one-of, name patterns, exact id bounds."""
    schemas = spec["components"]["schemas"]

    def form(path: str) -> dict[str, Any]:
        ref = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        return dict(schemas[ref["schema"]["$ref"].rsplit("/", 1)[-1]])

    for path in ("/enroll", "/identify", "/verify"):
        for name, field in form(path)["properties"].items():
            assert {"type": "null"} not in field.get("anyOf", []), (path, name)
    assert form("/verify")["oneOf"] == [{"required": ["identity_id"]}, {"required": ["identity"]}]
    assert form("/verify")["properties"]["identity_id"]["maximum"] == 2**63 - 1
    assert form("/enroll")["properties"]["identity"]["pattern"].startswith("^[^\\u0000-")
    for item in spec["paths"].values():
        for operation in item.values():
            if "requestBody" in operation:
                assert "400" in operation["responses"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_allow_names_every_method_and_file_parts_need_no_filename(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    """Issue 28: a 405's Allow lists every method of the path; an empty background part is
    no background, a file field without a filename is still a file; no Python names."""
    with running(settings, embedder) as client:
        admin = headers(keys["admin"])
        for path, methods in [
            ("/galleries", "GET, POST"),
            ("/galleries/default", "DELETE, GET, PATCH"),
            ("/identities/1", "DELETE, GET, PATCH"),
            ("/keys", "GET, POST"),
        ]:
            r = client.options(path, headers=admin)
            assert r.status_code == 405 and r.headers["allow"] == methods, (path, r.headers)
        ann = enroll(client, keys["enroll"], "ann", seed=1, background="")
        assert ann.status_code == 201, ann.text
        _, walk_bytes, _ = npz_upload(2)
        body = (
            b'--b\r\nContent-Disposition: form-data; name="identity"\r\n\r\nann\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\n' + walk_bytes + b"\r\n"
            b'--b\r\nContent-Disposition: form-data; name="background"\r\n\r\n\r\n--b--\r\n'
        )
        r = client.post(
            "/enroll",
            headers={**admin, "Content-Type": "multipart/form-data; boundary=b"},
            content=body,
        )
        assert r.status_code == 201, r.text
        r = client.post(
            "/identify",
            headers=admin,
            files={"file": ("w.npz", walk_bytes)},
            data={"background": "not an image"},
        )
        error = assert_error(r, 422, "invalid_upload")
        assert "<" not in error["message"] and "object at 0x" not in error["message"]
