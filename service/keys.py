"""API keys over HTTP (``/keys``): create, list and revoke, for an admin key of every gallery.

A key bound to galleries cannot manage keys: it could otherwise mint a key for galleries it
may not use. The secret of a new key is in the creation answer only. Any key may read its
own scopes and galleries (``/me``), so a client (the console) shows only what it may
reach instead of learning it from 403s.
"""

from __future__ import annotations

from gaitid.service.auth import Principal, Scope, create_key, list_keys, parse_galleries, revoke_key
from gaitid.service.db.models import ApiKey
from gaitid.service.errors import ConflictError
from gaitid.service.schemas import KeyCreate, KeyCreated, KeyInfo, OwnKey
from gaitid.service.state import ServiceState


def _info(row: ApiKey) -> KeyInfo:
    bound = row.galleries
    return KeyInfo(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=sorted(row.scopes.split(",")),
        galleries=None if bound is None else sorted(bound),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def create(state: ServiceState, principal: Principal, body: KeyCreate) -> KeyCreated:
    principal.require_every_gallery("key management")
    galleries = parse_galleries(body.galleries)
    scopes = frozenset(Scope(s) for s in body.scopes)
    with state.db.session(write=True) as session:
        created = create_key(session, scopes, body.name, galleries, created_by=principal.key_id)
        row = session.get(ApiKey, created.id)
        assert row is not None  # just committed
        return KeyCreated(**_info(row).model_dump(), key=created.key)


def list_all(state: ServiceState, principal: Principal) -> list[KeyInfo]:
    principal.require_every_gallery("key management")
    with state.db.session() as session:
        return [_info(row) for row in list_keys(session)]


def revoke(state: ServiceState, principal: Principal, key_id: int) -> None:
    """Revoke another key. A key revoking itself is refused (409): it would lock its caller
    out mid-session (a generic client walking the API did exactly that); another admin key or
    ``gaitid keys revoke`` can."""
    principal.require_every_gallery("key management")
    if key_id == principal.key_id:
        raise ConflictError(
            f"key {key_id} is the key of this request and cannot revoke itself: revoke it with "
            f"another admin key, or `gaitid keys revoke {key_id}` on the server"
        )
    with state.db.session(write=True) as session:
        revoke_key(session, key_id, revoked_by=principal.key_id)


def own(principal: Principal) -> OwnKey:
    """The request's own key: what it may do and where (no secret, no other key)."""
    return OwnKey(
        id=principal.key_id,
        name=principal.name,
        scopes=sorted(s.value for s in principal.scopes),
        galleries=None if principal.galleries is None else sorted(principal.galleries),
    )
