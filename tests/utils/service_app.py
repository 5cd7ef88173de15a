"""Helpers of the service API tests: uploads, keys, a running app, DB access."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from numpy.typing import NDArray

from gaitid.service.app import create_app
from gaitid.service.auth import Scope, create_key
from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.walks.inference import Embedder
from tests.utils.uploads import encode_npz, walking_masks

ERROR_KEYS = {"code", "message", "details"}


def walk(seed: int, frames: int = 12) -> NDArray[np.uint8]:
    """A small raw walker ``(T, 90, 120)`` 0/255 that decodes to ``frames`` usable frames."""
    return walking_masks(frames, seed=seed)


def npz_upload(seed: int, frames: int = 12) -> tuple[str, bytes, str]:
    """An httpx ``files=`` entry holding one walk as ``.npz``."""
    return (f"walk{seed}.npz", encode_npz(walk(seed, frames)), "application/octet-stream")


def npy_bytes(array: NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def make_keys(settings: Settings) -> dict[str, str]:
    """One key per scope, written straight to the test database."""
    db = Database(settings.resolved_database_url)
    try:
        keys = {}
        for scope in Scope:
            with db.session(write=True) as session:
                keys[scope.value] = create_key(session, frozenset({scope}), f"test-{scope}").key
        return keys
    finally:
        db.dispose()


def headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response has ``status`` and the one error body; returns its ``error`` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == ERROR_KEYS, body
    assert body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def build_app(settings: Settings, embedder: Embedder) -> FastAPI:
    """The app with a shared, already-loaded embedder (saves loading ONNX per test)."""
    return create_app(settings, embedder_factory=lambda _settings: embedder)


@contextmanager
def running(settings: Settings, embedder: Embedder) -> Iterator[TestClient]:
    """A started app (lifespan run) behind a TestClient."""
    with TestClient(build_app(settings, embedder), raise_server_exceptions=False) as client:
        yield client


def enroll(
    client: TestClient, key: str, identity: str, seed: int, frames: int = 12, **fields: Any
) -> Any:
    return client.post(
        "/enroll",
        headers=headers(key),
        files={"file": npz_upload(seed, frames)},
        data={"identity": identity, **{k: str(v) for k, v in fields.items()}},
    )


def identify(client: TestClient, key: str, seed: int, frames: int = 12, **fields: Any) -> Any:
    return client.post(
        "/identify",
        headers=headers(key),
        files={"file": npz_upload(seed, frames)},
        data={k: str(v) for k, v in fields.items()},
    )
