"""Alembic migrations: they create what the models declare; the app refuses an unmigrated DB."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from gaitid.cli import build_app
from gaitid.migrations import ALEMBIC_INI, MIGRATIONS_DIR
from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.models import Base
from gaitid.service.db.schema import head_revision, schema_status, upgrade
from gaitid.service.errors import DatabaseNotMigratedError
from gaitid.service.walks.inference import Embedder
from tests.utils.service_app import build_app as build_service_app


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
    assert head_revision() == "0004"


def test_upgrade_from_empty_and_downgrade(tmp_path: Path) -> None:
    from alembic import command

    from gaitid.service.db.schema import alembic_config

    db = Database(f"sqlite:///{tmp_path / 'sub' / 'fresh.db'}")  # parent folder is created
    assert schema_status(db.engine).current is None
    assert upgrade(db.engine) == head_revision()
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
    assert done.exit_code == 0 and head_revision() in done.output
    assert str(tmp_path / "gaitid.db") in done.output
    assert runner.invoke(cli, ["db", "current"]).exit_code == 0


def test_upgrade_to_0003_keeps_rows_and_never_reuses_erased_ids(tmp_path: Path) -> None:
    """A 0002 database with rows, one identity erased, upgraded: nothing cascades away, and
    neither the erased identity's id nor its template's is issued again."""
    from sqlalchemy import text

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    assert upgrade(db.engine, "0002") == "0002"
    now = "2026-01-01 00:00:00"
    with db.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO galleries (id, name, created_at) VALUES (1, 'g', '{now}')"))
        for i in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO identities (id, gallery_id, name, created_at, updated_at) "
                    f"VALUES ({i}, 1, 'p{i}', '{now}', '{now}')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO templates (id, identity_id, model_version, model_sha256, "
                    "embedding, embedding_dim, content_sha256, frames_used, frames_total, "
                    f"created_at) VALUES ({10 + i}, {i}, 'v', 'm', x'00', 1, 'c{i}', 9, 9, '{now}')"
                )
            )
        conn.execute(
            text(
                "INSERT INTO audit_log (at, action, identity_id, template_id, gallery_id) "
                f"VALUES ('{now}', 'delete_identity', 4, 14, 1)"
            )
        )
        conn.execute(text("DELETE FROM identities WHERE id = 3"))  # cascades to template 13
    assert upgrade(db.engine) == head_revision()
    with db.engine.begin() as conn:
        ids = conn.execute(text("SELECT id FROM identities ORDER BY id")).scalars().all()
        assert ids == [1, 2]
        kept = conn.execute(text("SELECT id FROM templates ORDER BY id")).scalars().all()
        assert kept == [11, 12]
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1  # back on
        conn.execute(
            text(
                "INSERT INTO identities (gallery_id, name, created_at, updated_at) "
                f"VALUES (1, 'new', '{now}', '{now}')"
            )
        )
        new_id = conn.execute(text("SELECT id FROM identities WHERE name = 'new'")).scalar()
    assert new_id == 5  # above 3 (erased here) and 4 (erased before, named by the audit log)
    db.dispose()
