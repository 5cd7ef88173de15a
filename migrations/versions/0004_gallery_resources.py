"""Galleries as resources, keys bound to galleries.

- ``galleries.metadata``: a JSON object stored with a gallery (``POST /galleries``).
- ``api_key_galleries``: the galleries a key may use, by name; a key with no rows here may
  use every gallery (all keys created before this revision). Bound by name, so a key can be
  bound to a gallery its first enrolment will create; erased with its key.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# Spelled out rather than imported from service.db.models (see 0001).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("galleries") as batch:
        batch.add_column(sa.Column("metadata", sa.JSON(), nullable=True))
    op.create_table(
        "api_key_galleries",
        sa.Column("api_key_id", BigId, nullable=False),
        sa.Column("gallery", sa.String(128), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_api_key_galleries_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("api_key_id", "gallery", name=op.f("pk_api_key_galleries")),
    )


def downgrade() -> None:
    op.drop_table("api_key_galleries")
    with op.batch_alter_table("galleries") as batch:
        batch.drop_column("metadata")
