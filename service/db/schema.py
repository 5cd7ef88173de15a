"""Schema migrations (Alembic) and the start-up check that refuses an unmigrated database.

The app never migrates on its own: a process that silently altered a shared PostgreSQL
schema on start-up would surprise whoever runs several replicas. ``gaitid db upgrade`` (or
``gaitid serve --init`` for the laptop path) does it explicitly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from gaitid.migrations import ALEMBIC_INI, MIGRATIONS_DIR
from gaitid.service.errors import DatabaseNotMigratedError

logger = logging.getLogger(__name__)


def alembic_config() -> Config:
    """The Alembic config of the shipped migrations, located by file path (not the CWD)."""
    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no Alembic revisions found in {MIGRATIONS_DIR / 'versions'}")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database, or None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the database behind ``engine`` to ``revision``; returns the new revision.

    On SQLite, foreign keys are off while the migrations run (a revision that rebuilds a
    table must not cascade into its children; SQLite's documented procedure for schema
    changes), and the result must pass ``PRAGMA foreign_key_check`` before it is committed.
    """
    cfg = alembic_config()
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw = conn.connection.dbapi_connection  # no transaction open yet: PRAGMA applies
        if sqlite and raw is not None:
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
        finally:
            if sqlite and raw is not None:
                raw.execute("PRAGMA foreign_keys=ON")
    new = current_revision(engine)
    logger.info("database at revision %s", new)
    return new


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def schema_status(engine: Engine) -> SchemaStatus:
    return SchemaStatus(current=current_revision(engine), head=head_revision())


def require_migrated(engine: Engine, url_for_display: str) -> None:
    """Raise :class:`DatabaseNotMigratedError` unless the database is at the code's head."""
    status = schema_status(engine)
    if status.up_to_date:
        return
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if status.current is not None and status.current not in known:
        raise DatabaseNotMigratedError(
            f"database {url_for_display} is at revision {status.current!r}, which this version "
            f"of gaitid does not know (its newest is {status.head!r}); run a newer gaitid"
        )
    raise DatabaseNotMigratedError(
        f"database {url_for_display} is not migrated (revision {status.current or 'none'}, "
        f"needed {status.head}); run `gaitid db upgrade` (same GAITID_DATABASE_URL) first"
    )
