"""Ids are never reused (SQLite): AUTOINCREMENT on every table whose ids leave the service.

Without AUTOINCREMENT, SQLite gives a new row the largest id in the table plus one, so erasing
the newest identity and enrolling someone else hands the erased person's identity and template
ids to the newcomer: old references, audit rows and client caches would then name another
person. With AUTOINCREMENT, SQLite keeps the largest id ever issued (``sqlite_sequence``) and
never goes below it. PostgreSQL's sequences never reuse values, so this revision changes
nothing there.

SQLite cannot add AUTOINCREMENT to an existing table, so each table is rebuilt (Alembic batch
mode: create, copy, drop, rename). Dropping a parent table would fire ``ON DELETE CASCADE`` on
its children, so foreign keys must be off while this runs: ``gaitid.service.db.schema.upgrade``
(what
``gaitid db upgrade`` and ``serve --init`` call) switches them off around the migration and
checks ``PRAGMA foreign_key_check`` before committing; this revision refuses to rebuild a
non-empty database with foreign keys on. Ids issued before the upgrade and already erased are
retired too: each sequence starts above the largest id the audit log mentions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Tables rebuilt, parents before children, with the audit-log column that names their ids.
TABLES: tuple[tuple[str, str | None], ...] = (
    ("galleries", "gallery_id"),
    ("identities", "identity_id"),
    ("templates", "template_id"),
    ("api_keys", "api_key_id"),
    ("audit_log", None),
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    foreign_keys_on = bind.exec_driver_sql("PRAGMA foreign_keys").scalar()
    if foreign_keys_on:
        rows = sum(
            int(bind.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar() or 0)
            for table, _ in TABLES
        )
        if rows:
            raise RuntimeError(
                "revision 0003 rebuilds SQLite tables and must run with foreign keys off "
                "(otherwise erasing the old tables would cascade): use `gaitid db upgrade`"
            )
    highest = {table: _largest_id_ever(bind, table, column) for table, column in TABLES}
    for table, _ in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
    for table, largest in highest.items():
        if largest:
            bind.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table})
            bind.execute(
                sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :s)"),
                {"t": table, "s": largest},
            )


def _largest_id_ever(bind: sa.Connection, table: str, audit_column: str | None) -> int:
    """The largest id of ``table`` still present or named by the audit log."""
    largest = int(bind.exec_driver_sql(f"SELECT COALESCE(MAX(id), 0) FROM {table}").scalar() or 0)
    if audit_column is not None:
        audited = bind.exec_driver_sql(
            f"SELECT COALESCE(MAX({audit_column}), 0) FROM audit_log"
        ).scalar()
        largest = max(largest, int(audited or 0))
    return largest


def downgrade() -> None:
    # Nothing to undo: revision 0002's code works unchanged on AUTOINCREMENT tables, and
    # rebuilding them again would only reopen the reuse of erased ids.
    pass
