"""``/keys``: API key management over HTTP (admin keys of every gallery)."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Response, status

from gaitid.service import keys
from gaitid.service.db.models import MAX_ID
from gaitid.service.deps import AdminKeyDep, StateDep
from gaitid.service.errors import error_responses
from gaitid.service.schemas import KeyCreate, KeyCreated, KeyInfo

router = APIRouter(prefix="/keys", tags=["keys"])


@router.post(
    "",
    response_model=KeyCreated,
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key (the secret is shown once)",
    responses=error_responses(401, 403, 422, 503),
)
async def create_key(state: StateDep, principal: AdminKeyDep, body: KeyCreate) -> KeyCreated:
    """`galleries` binds the new key: it then gets 403 on every other gallery."""
    return await anyio.to_thread.run_sync(keys.create, state, principal, body)


@router.get(
    "",
    response_model=list[KeyInfo],
    summary="Every API key (never the secrets)",
    responses=error_responses(401, 403, 503),
)
async def list_keys(state: StateDep, principal: AdminKeyDep) -> list[KeyInfo]:
    return await anyio.to_thread.run_sync(keys.list_all, state, principal)


@router.delete(
    "/{key_id}",
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
