"""Alembic migrations: they create what the models declare; the app refuses an unmigrated DB."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gaitid.cli import build_app
from migrations import ALEMBIC_INI, MIGRATIONS_DIR
from service.config import Settings
from service.db.engine import Database
from service.db.models import Base
from service.db.schema import head_revision, schema_status, upgrade
from service.errors import DatabaseNotMigratedError
from service.inference import Embedder
from tests.service.helpers import build_app as build_service_app


def test_migrations_match_models(db_url: str) -> None:
    db = Database(db_url)
    with db.engine.connect() as conn:
        diffs = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    db.dispose()
    assert diffs == []


def test_migrations_ship_inside_the_package() -> None:
    assert ALEMBIC_INI.is_file() and ALEMBIC_INI.parent == MIGRATIONS_DIR
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert head_revision() == "0002"


def test_upgrade_from_empty_and_downgrade(tmp_path: Path) -> None:
    from alembic import command

    from service.db.schema import alembic_config

    db = Database(f"sqlite:///{tmp_path / 'sub' / 'fresh.db'}")  # parent folder is created
    assert schema_status(db.engine).current is None
    assert upgrade(db.engine) == "0002"
    assert schema_status(db.engine).up_to_date
    cfg = alembic_config()
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert schema_status(db.engine).current is None
    db.dispose()


def test_app_refuses_unmigrated_database(
    tmp_path: Path, onnx_model: Path, embedder: Embedder
) -> None:
    settings = Settings(data_dir=tmp_path, model_path=onnx_model)  # default SQLite, never migrated
    app = build_service_app(settings, embedder)
    with pytest.raises(DatabaseNotMigratedError, match="gaitid db upgrade"), TestClient(app):
        pass


def test_db_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAITID_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    cli = build_app()
    behind = runner.invoke(cli, ["db", "current"])
    assert behind.exit_code == 1 and "none" in behind.output
    keys = runner.invoke(cli, ["keys", "create", "--scope", "admin"])
    assert keys.exit_code == 1 and "gaitid db upgrade" in keys.output
    done = runner.invoke(cli, ["db", "upgrade"])
    assert done.exit_code == 0 and "0002" in done.output
    assert str(tmp_path / "gaitid.db") in done.output
    assert runner.invoke(cli, ["db", "current"]).exit_code == 0
