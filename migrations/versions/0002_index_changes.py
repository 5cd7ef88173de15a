"""Change log of the searchable set (``index_changes``), for several processes on one database.

Every enrolment or erasure writes its template ids here in the same transaction as the
change; other service processes replay the log (woken by LISTEN/NOTIFY on PostgreSQL, and by
polling) to keep their in-memory indexes equal to SQL without a restart.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Spelled out rather than imported from service.db.models (see 0001).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "index_changes",
        sa.Column("seq", BigId, nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("gallery_id", BigId, nullable=False),
        sa.Column("template_id", BigId, nullable=False),
        sa.Column("origin", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_index_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_index_changes_at"), "index_changes", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_index_changes_at"), table_name="index_changes")
    op.drop_table("index_changes")
