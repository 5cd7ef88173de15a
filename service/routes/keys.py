"""``/keys``: API key management over HTTP (admin keys of every gallery); ``/me``: the key of
the request itself, for any key (outside ``/keys/`` so it does not share a path with
``DELETE /keys/{key_id}``)."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Response, status

from gaitid.service import keys
from gaitid.service.db.models import MAX_ID
from gaitid.service.deps import AdminKeyDep, AnyKeyDep, StateDep
from gaitid.service.errors import error_responses
from gaitid.service.schemas import KeyCreate, KeyCreated, KeyInfo, OwnKey

router = APIRouter(tags=["keys"])


@router.post(
    "/keys",
    response_model=KeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key (the secret is shown once)",
    responses=error_responses(401, 403, 422, 503),
)
async def create_key(state: StateDep, principal: AdminKeyDep, body: KeyCreate) -> KeyCreated:
    """`galleries` binds the new key: it then gets 403 on every other gallery."""
    return await anyio.to_thread.run_sync(keys.create, state, principal, body)


@router.get(
    "/keys",
    response_model=list[KeyInfo],
    summary="Every API key (never the secrets)",
    responses=error_responses(401, 403, 503),
)
async def list_keys(state: StateDep, principal: AdminKeyDep) -> list[KeyInfo]:
    return await anyio.to_thread.run_sync(keys.list_all, state, principal)


@router.get(
    "/me",
    response_model=OwnKey,
    summary="The key of this request: its scopes and galleries",
    responses=error_responses(401, 503),
)
async def own_key(principal: AnyKeyDep) -> OwnKey:
    """Any valid key. A client shows only what the key may reach (the console does)."""
    return keys.own(principal)


@router.delete(
    "/keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Revoke an API key",
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def revoke_key(
    state: StateDep, principal: AdminKeyDep, key_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> Response:
    """Requests with the key get 401 from now on. 409: a key cannot revoke itself."""
    await anyio.to_thread.run_sync(keys.revoke, state, principal, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
