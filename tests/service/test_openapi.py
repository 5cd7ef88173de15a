"""The OpenAPI document: one error schema for every 4xx, examples; schemathesis finds no 5xx."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gaitid.service.config import Settings
from gaitid.service.walks.inference import Embedder
from tests.utils.live_server import free_port
from tests.utils.service_app import build_app, enroll, headers, running


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


@pytest.fixture
def live(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> Iterator[str]:
    """The app under uvicorn in a thread of this process (the model is already loaded)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(settings, embedder),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=60) as client:
        for i, name in enumerate(["ann", "ben"], start=1):
            assert enroll(client, keys["enroll"], name, seed=i).status_code == 201  # type: ignore[arg-type]
    yield url
    server.should_exit = True
    thread.join(timeout=30)


_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_server_errors(live: str, keys: dict[str, str]) -> None:
    """Generated requests (with an admin key) to every operation never get a 5xx."""
    _fuzz(live, keys, max_examples=6)


@pytest.mark.slow
def test_no_server_errors_thorough(live: str, keys: dict[str, str]) -> None:
    """The same with many more examples, on both databases (slow: minutes)."""
    _fuzz(live, keys, max_examples=100)


def _fuzz(live: str, keys: dict[str, str], max_examples: int) -> None:
    """Schemathesis over every operation, ``max_examples`` each.

    Its pytest plugin is driven by hand (its collection hooks do not support this pytest
    version). /readyz may answer 503.
    """
    api = schemathesis.openapi.from_url(f"{live}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=max_examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            response = case.call(base_url=live, headers=headers(keys["admin"]), timeout=60)
            if case.path == "/readyz":
                assert response.status_code in (200, 503)
                return
            assert response.status_code < 500, (
                case.method,
                case.path,
                response.status_code,
                response.text,
            )
            # documented statuses, content types and bodies; "valid data accepted" is not
            # asked: random bytes are schema-valid files that rightly get 422
            case.validate_response(response, checks=_CHECKS)

        check()
