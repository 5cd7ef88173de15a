"""The CPU image's exact requirements, installed into a fresh virtualenv, serve for real.

There is no Docker engine on CI machines, so CI builds ``.venv-serve-cpu`` the way the
Dockerfile's ``cpu`` stage builds the image (``make serve-cpu-venv``: the pinned
``requirements/serve-cpu.txt``, then the project with ``--no-deps``) and runs the API from
it against PostgreSQL, as the container would.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from packaging.utils import canonicalize_name

from gaitid.service.db.schema import head_revision
from tests.utils.live_server import cli_env, live_server
from tests.utils.uploads import encode_npz, walking_masks

REPO = Path(__file__).resolve().parents[2]
PINS = REPO / "requirements" / "serve-cpu.txt"
SERVE_VENV = REPO / ".venv-serve-cpu"


def _pinner() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "pin_serve_cpu", PINS.with_name("pin_serve_cpu.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins() -> dict[str, str]:
    pins = {}
    for line in PINS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def test_pins_cover_the_runtime_and_cpu_extra_without_torch() -> None:
    pins = _pins()
    pinner = _pinner()
    for req in pinner.root_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is a runtime dependency but not pinned"
        assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])
    assert {"onnxruntime", "faiss-cpu"} <= set(pins)
    assert not {"torch", "onnxruntime-gpu", "faiss-gpu-cu12", "onnx"} & set(pins)


def test_pins_equal_the_tested_environment() -> None:
    """The image installs what the tests ran against (after a dependency change:
    ``make requirements``)."""
    pinner = _pinner()
    assert PINS.read_text() == pinner.render(pinner.closure(pinner.root_requirements()))


@pytest.mark.postgres
def test_api_runs_from_the_serve_cpu_venv(
    pg_database: str, onnx_model: Path, tmp_path: Path
) -> None:
    if not (SERVE_VENV / ".installed").is_file():
        pytest.skip(f"{SERVE_VENV.name} is absent: build it with `make serve-cpu-venv`")
    python, gaitid = SERVE_VENV / "bin" / "python", str(SERVE_VENV / "bin" / "gaitid")
    no_torch = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    env = cli_env(
        tmp_path / "data",
        onnx_model,
        GAITID_DATABASE_URL=pg_database,
        GAITID_MIN_FRAMES="4",
        GAITID_INTRA_OP_THREADS="1",
    )
    env.pop("PYTHONPATH", None)  # only what that environment installed

    def cli(*args: str) -> str:
        done = subprocess.run(
            [gaitid, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert head_revision() in cli("db", "upgrade")  # the migration step of docker-compose
    key = cli("keys", "create", "--scope", "admin", "--name", "ci").strip().splitlines()[-1]
    walk = encode_npz(walking_masks(12, seed=5))
    with live_server(env, tmp_path / "serve.log", gaitid=[gaitid]) as server:
        h = {"X-API-Key": key}
        r = httpx.post(
            f"{server.url}/enroll",
            headers=h,
            files={"file": ("w.npz", walk)},
            data={"identity": "erin"},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        r = httpx.post(
            f"{server.url}/identify", headers=h, files={"file": ("w.npz", walk)}, timeout=60
        )
        assert r.status_code == 200 and r.json()["matches"][0]["identity"] == "erin", r.text
        stats = httpx.get(f"{server.url}/stats", headers=h, timeout=30).json()
        assert stats["model"]["providers"] == ["CPUExecutionProvider"]
    # the server really ran from that environment's files, not the dev checkout
    where = subprocess.run(
        [python, "-c", "import gaitid.service; print(gaitid.service.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert str(SERVE_VENV) in where.stdout, where.stdout + where.stderr
