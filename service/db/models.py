"""SQLAlchemy 2 tables of the service. SQL is the source of truth; the FAISS index is a cache.

- ``galleries``: named sets of identities that are searched together, each with an optional
  default decision threshold.
- ``identities``: one person in one gallery, named by the caller (``name`` is unique per
  gallery).
- ``templates``: one enrolled walk of an identity: its 256-d float32 embedding (little-endian
  bytes), the model that produced it (``model_sha256`` decides comparability: templates of
  another model are never compared with the current one), the sha256 of the uploaded bytes
  (duplicate detection), capture attributes and, only when enabled, the preprocessed frames.
- ``api_keys``: sha256 hashes of API keys, never the keys, with scopes and revocation time.
- ``audit_log``: who enrolled, deleted or searched what. It keeps ids only, never names,
  embeddings or metadata, so erasing a person leaves nothing personal behind here.
- ``index_changes``: the ordered log of committed index changes (template ids only) that
  keeps several service processes on one database consistent (``gaitid.service.search.changelog``).

The Alembic migration in ``migrations/versions`` creates exactly these tables; a test compares
the two.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

#: Deterministic constraint names, so migrations can drop or alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Integer ids that are 64-bit on PostgreSQL (FAISS ids are int64) and ROWID aliases on SQLite
#: (SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY).
BigId = BigInteger().with_variant(Integer(), "sqlite")
#: The largest id a row can have (signed 64-bit): any larger number names no row, and the
#: routes refuse it with a 422 before it reaches the database driver (which would overflow).
MAX_ID = 2**63 - 1


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; store timezone-aware UTC values")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, timezone-aware (column defaults)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention above."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Gallery(Base):
    __tablename__ = "galleries"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    default_threshold: Mapped[float | None] = mapped_column(Float)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    identities: Mapped[list[Identity]] = relationship(
        back_populates="gallery", cascade="all, delete-orphan", passive_deletes=True
    )


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("gallery_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    gallery_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("galleries.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(256))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    gallery: Mapped[Gallery] = relationship(back_populates="identities")
    templates: Mapped[list[Template]] = relationship(
        back_populates="identity",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Template.id",
    )


class Template(Base):
    __tablename__ = "templates"
    __table_args__ = (
        # One template per uploaded content, identity and model: re-enrolling returns it.
        UniqueConstraint("identity_id", "content_sha256", "model_sha256"),
        Index("ix_templates_model_sha256", "model_sha256"),
        {"sqlite_autoincrement": True},  # ids never reused (migration 0003)
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    identity_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("identities.id", ondelete="CASCADE"), index=True
    )
    model_version: Mapped[str] = mapped_column(String(128))
    model_sha256: Mapped[str] = mapped_column(String(64))
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    embedding_dim: Mapped[int] = mapped_column(Integer)
    content_sha256: Mapped[str] = mapped_column(String(64))
    view: Mapped[str | None] = mapped_column(String(64))
    condition: Mapped[str | None] = mapped_column(String(64))
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    frames_used: Mapped[int] = mapped_column(Integer)
    frames_total: Mapped[int] = mapped_column(Integer)
    silhouettes: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    identity: Mapped[Identity] = relationship(back_populates="templates")


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(64))
    """Comma-separated subset of ``identify,enroll,admin``."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    bindings: Mapped[list[ApiKeyGallery]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )

    @property
    def galleries(self) -> frozenset[str] | None:
        """The galleries this key may use; ``None``: every gallery."""
        return frozenset(b.gallery for b in self.bindings) if self.bindings else None


class ApiKeyGallery(Base):
    """A gallery (by name) a key is bound to; a key without rows here may use every gallery."""

    __tablename__ = "api_key_galleries"

    api_key_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    gallery: Mapped[str] = mapped_column(String(128), primary_key=True)


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(32))
    api_key_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    gallery_id: Mapped[int | None] = mapped_column(BigId)
    identity_id: Mapped[int | None] = mapped_column(BigId)
    template_id: Mapped[int | None] = mapped_column(BigId)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class IndexChange(Base):
    """One committed change of the searchable set: a template added to or removed from a
    gallery's index. Written in the same transaction as the change itself, so the log holds
    exactly the committed changes, in commit order (``seq``; see
    ``gaitid.service.search.changelog``).
    Other processes replay it to keep their in-memory indexes equal to SQL. Ids only: no
    embedding or name is copied here, so an erasure leaves nothing personal behind.
    """

    __tablename__ = "index_changes"
    # AUTOINCREMENT on SQLite: never reuse a sequence number, even after pruning.
    __table_args__ = ({"sqlite_autoincrement": True},)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True)
    op: Mapped[str] = mapped_column(String(8))
    """``add`` or ``remove``."""
    gallery_id: Mapped[int] = mapped_column(BigId)
    template_id: Mapped[int] = mapped_column(BigId)
    origin: Mapped[str] = mapped_column(String(32))
    """The writing process (random per start); it applied the change itself at commit."""
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
