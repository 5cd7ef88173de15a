"""Fixtures of the service tests: the tiny ONNX model, SQLite and PostgreSQL databases, keys.

Every API test runs on both backends (``db_url`` is parametrised): a fresh migrated SQLite
file per test (copied from one migrated template), and one throwaway PostgreSQL database per
session (random name, dropped at the end) truncated before each test. PostgreSQL tests skip
with the reason when 127.0.0.1:5432 is unreachable.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.schema import upgrade
from gaitid.service.walks.inference import Embedder
from tests.utils.onnx_models import export_tiny_onnx
from tests.utils.service_app import make_keys

PG_HOST = os.environ.get("GAITID_TEST_PG_HOST", "127.0.0.1")
PG_ADMIN_DSN = f"host={PG_HOST} port=5432 user=postgres dbname=postgres connect_timeout=3"
TABLES = "index_changes, audit_log, templates, identities, galleries, api_keys"


@pytest.fixture(autouse=True)
def _no_gaitid_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their settings explicitly; a developer's GAITID_* must not leak in."""
    for name in list(os.environ):
        if name.startswith("GAITID_") and name != "GAITID_TEST_PG_HOST":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_onnx(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def embedder(onnx_model: Path) -> Embedder:
    """One loaded model shared by all tests (it is stateless)."""
    return Embedder(onnx_model, device="cpu", intra_op_threads=1)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test gets a copy (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "gaitid.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway migrated PostgreSQL database for this session, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable at {PG_HOST}:5432 (user postgres): {exc}")
    name = f"gaitid_test_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@{PG_HOST}:5432/{name}"
    try:
        db = Database(url)
        upgrade(db.engine)
        db.dispose()
        yield url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated, empty database: a SQLite copy, or the session's PostgreSQL truncated."""
    if request.param == "sqlite":
        target = tmp_path / "gaitid.db"
        shutil.copyfile(sqlite_template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_url")
    db = Database(url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    db.dispose()
    return url


@pytest.fixture
def settings(tmp_path: Path, db_url: str, onnx_model: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        model_path=onnx_model,
        min_frames=4,
        batch_max_wait_ms=2.0,
        intra_op_threads=1,
    )


@pytest.fixture
def keys(settings: Settings) -> dict[str, str]:
    """``{"identify": key, "enroll": key, "admin": key}`` in the test database."""
    return make_keys(settings)
