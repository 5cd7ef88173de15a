"""Fixtures of the deployment tests: a throwaway PostgreSQL database per test, the tiny model.

The database gets a random name, is migrated like a deployment does (``gaitid db upgrade``
semantics through ``gaitid.service.db.schema.upgrade``) and is dropped afterwards even when the test
fails (``WITH (FORCE)`` ends connections of server processes that are still around). Tests
skip with the reason when PostgreSQL is unreachable at 127.0.0.1:5432 (user postgres).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from gaitid.service.auth import Scope, create_key
from gaitid.service.db.engine import Database
from gaitid.service.db.schema import upgrade
from tests.utils.onnx_models import export_tiny_onnx

PG_HOST = os.environ.get("GAITID_TEST_PG_HOST", "127.0.0.1")
PG_ADMIN_DSN = f"host={PG_HOST} port=5432 user=postgres dbname=postgres connect_timeout=3"


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_tiny_onnx(tmp_path_factory.mktemp("model"))


@pytest.fixture
def pg_database() -> Iterator[str]:
    """An empty, unmigrated throwaway database: its SQLAlchemy URL."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable at {PG_HOST}:5432 (user postgres): {exc}")
    name = f"gaitid_deploy_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """A migrated throwaway database."""
    db = Database(pg_database)
    try:
        upgrade(db.engine)
    finally:
        db.dispose()
    return pg_database


def admin_key(database_url: str) -> str:
    """A new admin API key written straight to the database."""
    db = Database(database_url)
    try:
        with db.session(write=True) as session:
            return create_key(session, frozenset({Scope.ADMIN}), "deploy-test").key
    finally:
        db.dispose()
