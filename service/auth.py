"""API keys: creation, hashing, lookup and scope checks.

A key is ``gid_<prefix>_<secret>`` with 256 random bits of secret; only its sha256 is stored.
A fast unsalted hash is enough because the key is high-entropy (it is not a password that
could be guessed), and it lets the lookup be one indexed equality query; the stored and the
computed hash are still compared with :func:`hmac.compare_digest`. The short ``prefix`` is
kept in clear so ``gaitid keys list`` can show which key is which.

Scopes: ``identify`` (identify, verify, read identities), ``enroll`` (enroll, read identities),
``admin`` (everything, including delete, galleries and the index). There is no default key:
a fresh database accepts no request until ``gaitid keys create`` was run.

A key may be bound to galleries (``--gallery NAME``, repeatable): it then gets 403 for every
other gallery on every endpoint, and for what spans all galleries (the index, key management).
A key bound to none may use every gallery.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gaitid.service.db.engine import Database
from gaitid.service.db.models import MAX_ID, ApiKey, ApiKeyGallery, AuditLog
from gaitid.service.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from gaitid.service.schemas import GALLERY_PATTERN

logger = logging.getLogger(__name__)

KEY_PREFIX = "gid"
#: ``last_used_at`` is refreshed at most this often, so reads do not become writes.
LAST_USED_RESOLUTION = timedelta(seconds=60)
#: A revoked key's denials are audited at most once per key in this interval.
DENIAL_AUDIT_INTERVAL = timedelta(seconds=60)


class Scope(StrEnum):
    IDENTIFY = "identify"
    ENROLL = "enroll"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: which key, what it may do, and where."""

    key_id: int
    name: str
    scopes: frozenset[Scope]
    galleries: frozenset[str] | None = None
    """The galleries the key is bound to; ``None``: every gallery."""

    def allows(self, scope: Scope) -> bool:
        """Admin implies every scope."""
        return Scope.ADMIN in self.scopes or scope in self.scopes

    def may_use(self, gallery: str) -> bool:
        return self.galleries is None or gallery in self.galleries

    def require_gallery(self, gallery: str) -> None:
        """403 unless the key may use ``gallery``."""
        if not self.may_use(gallery):
            bound = ", ".join(sorted(self.galleries or ()))
            raise PermissionDeniedError(
                f"this API key is bound to the galleries {bound}; it may not use {gallery!r}"
            )

    def require_every_gallery(self, what: str) -> None:
        """403 for a bound key: ``what`` spans every gallery."""
        if self.galleries is not None:
            raise PermissionDeniedError(
                f"{what} spans every gallery; this API key is bound to some galleries only"
            )


def parse_scopes(values: list[str] | tuple[str, ...]) -> frozenset[Scope]:
    """Validate scope names; raises :class:`InvalidRequestError` naming the bad one."""
    allowed = ", ".join(s.value for s in Scope)
    if not values:
        raise InvalidRequestError(f"at least one scope is needed; allowed: {allowed}")
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(value.strip().lower()))
        except ValueError:
            raise InvalidRequestError(f"unknown scope {value!r}; allowed: {allowed}") from None
    return frozenset(scopes)


def parse_galleries(values: list[str] | tuple[str, ...] | None) -> frozenset[str] | None:
    """Gallery names a key is bound to; ``None`` (every gallery) when there are none."""
    if not values:
        return None
    bad = [v for v in values if not re.fullmatch(GALLERY_PATTERN, v)]
    if bad:
        raise InvalidRequestError(
            f"gallery name {bad[0]!r} is not valid: letters, digits, '_', '.', '-' (1-128, "
            "starting with a letter or digit)"
        )
    return frozenset(values)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> tuple[str, str]:
    """A new ``(key, prefix)``; the key is shown once and never stored."""
    prefix = secrets.token_hex(4)
    return f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}", prefix


@dataclass(frozen=True)
class CreatedKey:
    id: int
    name: str
    prefix: str
    scopes: frozenset[Scope]
    key: str
    galleries: frozenset[str] | None = None


def create_key(
    session: Session,
    scopes: frozenset[Scope],
    name: str,
    galleries: frozenset[str] | None = None,
    *,
    created_by: int | None = None,
) -> CreatedKey:
    """Store a new key's hash and return the key itself (the only time it exists in clear).

    ``galleries`` binds the key to those galleries (names validated by the caller); ``None``
    or empty: every gallery.
    """
    if not name or len(name) > 128:
        raise InvalidRequestError(f"key name must be 1..128 characters; got {len(name)}")
    key, prefix = generate_key()
    row = ApiKey(name=name, prefix=prefix, key_hash=hash_key(key), scopes=",".join(sorted(scopes)))
    row.bindings = [ApiKeyGallery(gallery=g) for g in sorted(galleries or ())]
    session.add(row)
    session.flush()
    detail: dict[str, object] = {"scopes": row.scopes}
    if galleries:
        detail["galleries"] = len(galleries)
    session.add(AuditLog(action="key.create", api_key_id=created_by or row.id, detail=detail))
    session.commit()
    return CreatedKey(
        id=row.id, name=name, prefix=prefix, scopes=scopes, key=key, galleries=row.galleries
    )


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_key(session: Session, key_ref: str | int, *, revoked_by: int | None = None) -> ApiKey:
    """Revoke by id (an ``int``) or by what an operator typed (a ``str``: a prefix, else a
    numeric id); revoked keys get 401 from then on.

    A typed reference is looked up as a prefix first: a prefix is 8 hex digits, all of them
    decimal for about one key in 40, and such a prefix used to be read as an id and name no
    key. A number beyond the largest id names no row (not a database error)."""
    shown, rows = str(key_ref), list[ApiKey]()
    if isinstance(key_ref, str):
        rows = list(session.scalars(select(ApiKey).where(ApiKey.prefix == key_ref)))
        if not rows and key_ref.isascii() and key_ref.isdigit():
            key_ref = int(key_ref)
    if isinstance(key_ref, int) and 0 < key_ref <= MAX_ID:
        rows = list(session.scalars(select(ApiKey).where(ApiKey.id == key_ref)))
    if not rows:
        raise NotFoundError(f"no API key with id or prefix {shown!r}")
    if len(rows) > 1:
        raise InvalidRequestError(f"prefix {shown!r} matches {len(rows)} keys; use the id")
    row = rows[0]
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        session.add(
            AuditLog(
                action="key.revoke", api_key_id=revoked_by or row.id, detail={"key_id": row.id}
            )
        )
        session.commit()
    return row


def authenticate(db: Database, presented: str | None, needed: Scope | None) -> Principal:
    """Resolve ``X-API-Key`` to a :class:`Principal` allowed ``needed``, or raise 401/403.

    ``needed=None`` takes any valid key (every key holds at least one scope): the routes that
    tell a caller about its own key and the model, which every scope needs to know.

    The lookup is a read; a write transaction is opened only to audit the denial of a known
    key or to refresh ``last_used_at`` (at most once per :data:`LAST_USED_RESOLUTION`), so
    authenticating does not serialise requests on SQLite's write lock.
    """
    if not presented:
        raise AuthenticationError("missing X-API-Key header")
    digest = hash_key(presented)
    with db.session() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.key_hash == digest)).one_or_none()
        if row is not None:
            _ = row.galleries  # load the bindings while the session is open
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        logger.warning("rejected unknown API key")
        raise AuthenticationError("unknown API key")
    if row.revoked_at is not None:
        _audit(db, row.id, {"reason": "revoked"}, once_per=DENIAL_AUDIT_INTERVAL)
        raise AuthenticationError(f"API key {row.prefix} was revoked")
    principal = Principal(
        key_id=row.id,
        name=row.name,
        scopes=frozenset(Scope(s) for s in row.scopes.split(",")),
        galleries=row.galleries,
    )
    if needed is not None and not principal.allows(needed):
        _audit(db, row.id, {"reason": "scope", "needed": needed.value})
        have = ", ".join(sorted(s.value for s in principal.scopes))
        raise PermissionDeniedError(f"this endpoint needs scope {needed.value!r}; key has: {have}")
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        with db.session(write=True) as session:
            session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
            session.commit()
    return principal


def _audit(
    db: Database, key_id: int, detail: dict[str, str], *, once_per: timedelta | None = None
) -> None:
    """Audit a denial; with ``once_per``, at most one row per key in that interval (a client
    retrying with a revoked key must not grow the audit log by a row per request)."""
    with db.session(write=True) as session:
        if once_per is not None:
            last = session.scalar(
                select(AuditLog.at)
                .where(AuditLog.action == "auth.denied", AuditLog.api_key_id == key_id)
                .order_by(AuditLog.id.desc())
                .limit(1)
            )
            if last is not None and datetime.now(UTC) - last < once_per:
                return
        session.add(AuditLog(action="auth.denied", api_key_id=key_id, detail=detail))
        session.commit()
