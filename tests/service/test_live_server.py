"""`gaitid serve` for real: uvicorn subprocess on loopback, the README's curl-like flow."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import Result
from typer.testing import CliRunner

from gaitid.cli import build_app
from tests.utils.live_server import cli_env, live_server
from tests.utils.uploads import encode_npz, encode_zip, walking_masks


@pytest.fixture
def env(tmp_path: Path, onnx_model: Path) -> dict[str, str]:
    return cli_env(tmp_path / "data", onnx_model, GAITID_MIN_FRAMES="4")


def test_refuses_unmigrated_database(env: dict[str, str]) -> None:
    result = _cli(["serve", "--port", "1"], {**env, "GAITID_MODLE_PATH": "typo"})
    assert result.exit_code == 1
    assert "gaitid db upgrade" in result.output
    assert "unknown setting GAITID_MODLE_PATH" in result.output


def test_refuses_missing_model(env: dict[str, str], tmp_path: Path) -> None:
    result = _cli(
        ["serve", "--init", "--port", "1"], {**env, "GAITID_MODEL_PATH": str(tmp_path / "no.onnx")}
    )
    assert result.exit_code == 1
    assert "GAITID_MODEL_PATH" in result.output and "no.onnx" in result.output


def test_serve_keys_enroll_identify_restart(env: dict[str, str], tmp_path: Path) -> None:
    walk_a, walk_b = walking_masks(12, seed=1), walking_masks(12, seed=2)
    with live_server(env, tmp_path / "serve1.log", init=True) as server:
        created = _cli(["keys", "create", "--scope", "admin", "--name", "ops"], env)
        assert created.exit_code == 0, created.output
        key = created.output.strip().splitlines()[-1]
        h = {"X-API-Key": key}
        r = httpx.post(
            f"{server.url}/enroll",
            headers=h,
            files={"file": ("a.zip", encode_zip(walk_a))},
            data={"identity": "alice"},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        httpx.post(
            f"{server.url}/enroll",
            headers=h,
            files={"file": ("b.npz", encode_npz(walk_b))},
            data={"identity": "bob"},
            timeout=60,
        )
        r = httpx.post(
            f"{server.url}/identify",
            headers=h,
            files={"file": ("a.npz", encode_npz(walk_a))},
            timeout=60,
        )
        assert r.json()["matches"][0]["identity"] == "alice"
        # a body announced larger than the cap is refused before it is read
        status, body = _raw_post(server.url, "/enroll", key, declared=10**10, sent=b"x" * 1024)
        assert status == 413 and b'"request_too_large"' in body
        env_with_key = {**env, "GAITID_API_KEY": key, "GAITID_URL": server.url}
        check = _cli(["index", "check"], env_with_key)
        assert check.exit_code == 0 and '"consistent": true' in check.output, check.output
        rebuild = _cli(["index", "rebuild"], env_with_key)
        assert rebuild.exit_code == 0 and "2 templates" in rebuild.output, rebuild.output
        denied = _cli(["index", "check", "--api-key", "gid_wrong"], env_with_key)
        assert denied.exit_code == 1 and "401" in denied.output
    with live_server(env, tmp_path / "serve2.log") as server:  # restart: same data dir
        r = httpx.post(
            f"{server.url}/identify",
            headers=h,
            files={"file": ("b.npz", encode_npz(walk_b))},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["matches"][0]["identity"] == "bob"


def _cli(args: list[str], env: dict[str, str]) -> Result:
    """The CLI in this process (a subprocess per command would pay every import again)."""
    gaitid_env = {k: v for k, v in env.items() if k.startswith("GAITID_")}
    return CliRunner().invoke(build_app(), args, env=gaitid_env)


def _raw_post(url: str, path: str, key: str, declared: int, sent: bytes) -> tuple[int, bytes]:
    """A POST whose Content-Length lies (clients like httpx refuse to send one)."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n"
            f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {declared}\r\n\r\n"
        )
        sock.sendall(head.encode() + sent)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 60:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.split(b"\r\n\r\n", 1)[1]
