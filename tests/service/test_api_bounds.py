"""Issue 14, items 1-2: bounded memory and CPU per request, no work after the answer.

The uploads are the reproductions of the issue, scaled to CI: a tiny compressed tar that
inflates to tens of MiB, and a zip of identical large PNG frames that takes seconds to
decode, answered by a timeout or abandoned by its client while it is being decoded.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from gaitid.preprocess import PreprocessedSequence
from gaitid.service.config import Settings
from gaitid.service.walks import uploads as uploads_module
from gaitid.service.walks.inference import Embedder
from tests.utils import uploads
from tests.utils.asgi import http_scope
from tests.utils.service_app import assert_error, headers, running

MiB = 1 << 20


def _metric(client: TestClient, name: str, **labels: str) -> float:
    """A sample of the app's metrics, read from its registry (not over HTTP: with a
    sub-second request timeout on a loaded machine, /metrics itself could time out)."""
    value = client.app.state.metrics.registry.get_sample_value(name, labels or None)  # type: ignore[attr-defined]
    assert value is not None, f"{name} {labels} not in the metrics"
    return float(value)


def _slow_zip(frames: int = 400, side: int = 800) -> bytes:
    """``frames`` copies of one large PNG: small on the wire, seconds of decoding."""
    frame = np.zeros((side, side), np.uint8)
    frame[side // 8 : -side // 8, side // 3 : side // 2] = 255
    png = uploads.encode_image(frame)
    return uploads.zip_with_members({f"f{i}.png": png for i in range(frames)})


def _enroll_file(client: TestClient, key: str, name: str, data: bytes) -> Any:
    return client.post(
        "/enroll",
        headers=headers(key),
        data={"identity": "ann"},
        files={"file": (name, data, "application/octet-stream")},
    )


def _wait_until_idle(client: TestClient, limit_s: float) -> float:
    """Seconds until no decode thread runs, failing after ``limit_s``."""
    start = time.perf_counter()
    while _metric(client, "gaitid_decodes_running") > 0:
        assert time.perf_counter() - start < limit_s, "decoding went on after the answer"
        time.sleep(0.02)
    return time.perf_counter() - start


def test_tiny_compressed_bomb_is_413(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    bomb = uploads.tar_bomb(48 * MiB, "bz2")
    with running(settings, embedder) as client:
        response = _enroll_file(client, keys["enroll"], "walk.tar.bz2", bomb)
        error = assert_error(response, 413)
        assert "expands" in error["message"]


def test_pixel_budget_is_413(settings: Settings, embedder: Embedder, keys: dict[str, str]) -> None:
    tight = settings.model_copy(update={"max_pixels_per_request": 4_000_000})
    with running(tight, embedder) as client:
        response = _enroll_file(client, keys["enroll"], "walk.zip", _slow_zip(frames=20))
        error = assert_error(response, 413)
        assert "pixels per walk" in error["message"]


def test_decoding_stops_when_the_request_times_out(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    # 0.6 s: inside the ~1.8 s decode (EPYC Zen 3), but long enough that a loaded machine
    # has started decoding when it fires, so there is a decode to cancel
    quick = settings.model_copy(update={"request_timeout_s": 0.6})
    data = _slow_zip()
    with running(quick, embedder) as client:
        response = _enroll_file(client, keys["enroll"], "walk.zip", data)
        assert_error(response, 504, "timeout")
        _wait_until_idle(client, limit_s=3.0)  # a whole decode takes several times longer
        assert _metric(client, "gaitid_decodes_cancelled_total") == 1


def test_decoding_stops_when_the_client_goes_away(
    settings: Settings, embedder: Embedder, keys: dict[str, str]
) -> None:
    request = httpx.Request(
        "POST",
        "http://testserver/enroll",
        headers=headers(keys["enroll"]),
        data={"identity": "ann"},
        files={"file": ("walk.zip", _slow_zip(), "application/zip")},
    )
    body = request.read()
    sent: list[dict[str, Any]] = []
    gone_at: list[float] = []

    with running(settings, embedder) as client:

        async def abandon() -> None:
            """Send the request, then close the connection once its walk is being decoded.

            Waiting for the decode (rather than a fixed delay) keeps a loaded machine, slow to
            parse the form, from hanging up before there is any decoding to stop."""
            delivered = False

            async def receive() -> dict[str, Any]:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                waited = 0.0
                while _metric(client, "gaitid_decodes_running") == 0:
                    assert waited < 20.0, "the upload was never decoded"
                    await anyio.sleep(0.02)
                    waited += 0.02
                await anyio.sleep(0.1)
                gone_at.append(time.perf_counter())
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)

            raw = [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
            scope = http_scope("POST", "/enroll", raw)
            await client.app(scope, receive, send)  # type: ignore[arg-type]

        assert client.portal is not None
        client.portal.call(abandon)
        assert gone_at, "the client never hung up"
        assert time.perf_counter() - gone_at[0] < 2.0  # the handler stopped with its client
        assert not [m for m in sent if m["type"] == "http.response.start"]
        _wait_until_idle(client, limit_s=3.0)
        assert _metric(client, "gaitid_decodes_cancelled_total") == 1
        gone = _metric(
            client, "gaitid_http_requests_total", method="POST", route="/enroll", status="499"
        )
        assert gone == 1


def test_concurrent_decodes_are_bounded(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most ``max_concurrent_decodes`` uploads are in memory and decoding at once."""
    running_now = 0
    most = 0
    lock = threading.Lock()
    real = uploads_module.decode_upload

    def probe(*args: Any, **kwargs: Any) -> PreprocessedSequence:
        nonlocal running_now, most
        with lock:
            running_now += 1
            most = max(most, running_now)
        try:
            time.sleep(0.05)
            return real(*args, **kwargs)
        finally:
            with lock:
                running_now -= 1

    monkeypatch.setattr(uploads_module, "decode_upload", probe)
    two = settings.model_copy(update={"max_concurrent_decodes": 2})
    slots = anyio.CapacityLimiter(two.max_concurrent_decodes)

    class _File:
        filename = "walk.npz"

        def __init__(self, data: bytes) -> None:
            self.data = data

        async def seek(self, _offset: int) -> None:
            return None

        async def read(self, _size: int = -1) -> bytes:
            return self.data

    async def many() -> list[int]:
        from gaitid.service.metrics import Metrics

        metrics = Metrics()
        data = uploads.encode_npz(uploads.walking_masks(10))
        results: list[int] = []

        async def one() -> None:
            upload = uploads_module.Upload(_File(data), len(data), "sha")  # type: ignore[arg-type]
            decoded = await uploads_module.decode(upload, two, slots, metrics)
            results.append(decoded.sequence.used)

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(one)
        return results

    assert anyio.run(many) == [10] * 8
    assert most == 2
