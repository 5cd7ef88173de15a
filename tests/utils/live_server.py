"""A real ``gaitid serve`` in a subprocess on 127.0.0.1 (free port), as a user would run it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

_SCRIPT = Path(sys.executable).with_name("gaitid")
#: The installed console script (what a user types), else the same app through python -c.
GAITID = (
    [str(_SCRIPT)]
    if _SCRIPT.is_file()
    else [sys.executable, "-c", "from gaitid.cli import app; app()"]
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(data_dir: Path, model: Path, **extra: str) -> dict[str, str]:
    """The process environment with only this test's ``GAITID_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAITID_")}
    env.update(GAITID_DATA_DIR=str(data_dir), GAITID_MODEL_PATH=str(model), **extra)
    return env


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def output(self) -> str:
        return self.log.read_text()


@contextmanager
def live_server(
    env: dict[str, str],
    log: Path,
    *,
    init: bool = False,
    timeout: float = 90,
    gaitid: list[str] | None = None,
) -> Iterator[LiveServer]:
    """Start ``gaitid serve`` and wait until ``/readyz`` says ready; stop it (SIGINT) after.

    ``gaitid`` is the command to run (default: this environment's :data:`GAITID`).
    """
    port = free_port()
    args = [
        *(gaitid or GAITID),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *(["--init"] if init else []),
    ]
    with log.open("w") as sink:
        process = subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"gaitid serve exited with {process.returncode}:\n{server.output()}"
                )
            try:
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gaitid serve not ready after {timeout} s:\n{server.output()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
