"""``/identities``: list, read, update and erase enrolled people."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Query, Response, status

from gaitid.service import identities
from gaitid.service.db.models import MAX_ID
from gaitid.service.deps import AdminKeyDep, EnrollKeyDep, SessionDep, StateDep
from gaitid.service.errors import error_responses
from gaitid.service.identities import CURSOR_PATTERN
from gaitid.service.schemas import GALLERY_PATTERN, IdentityDetail, IdentityPage, IdentityUpdate

router = APIRouter(prefix="/identities", tags=["identities"])

IdentityId = Annotated[int, Path(ge=1, le=MAX_ID, description="The identity's id.")]


@router.get(
    "",
    response_model=IdentityPage,
    summary="List identities (cursor pagination)",
    responses=error_responses(401, 403, 404, 422, 503),
)
def list_identities(
    state: StateDep,
    session: SessionDep,
    principal: EnrollKeyDep,
    gallery_name: Annotated[str | None, Query(alias="gallery", pattern=GALLERY_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page."),
    ] = None,
    search: Annotated[
        str | None,
        Query(
            alias="q",
            max_length=256,
            description="Only identities whose name or metadata (as JSON text) contains this, "
            "ignoring case.",
            examples=["north"],
        ),
    ] = None,
) -> IdentityPage:
    return identities.list_identities(
        session, principal, state.model.sha256, gallery_name, limit, cursor, search
    )


@router.get(
    "/{identity_id}",
    response_model=IdentityDetail,
    summary="One identity with its templates",
    responses=error_responses(401, 403, 404, 422, 503),
)
def get_identity(
    state: StateDep, session: SessionDep, principal: EnrollKeyDep, identity_id: IdentityId
) -> IdentityDetail:
    return identities.identity_detail(session, principal, state.model.sha256, identity_id)


@router.patch(
    "/{identity_id}",
    response_model=IdentityDetail,
    summary="Rename an identity or replace its metadata",
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def update_identity(
    state: StateDep, principal: EnrollKeyDep, identity_id: IdentityId, body: IdentityUpdate
) -> IdentityDetail:
    return await anyio.to_thread.run_sync(
        identities.update_identity, state, principal, identity_id, body
    )


@router.delete(
    "/{identity_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Erase an identity and all its templates",
    responses=error_responses(401, 403, 404, 422, 503),
)
async def delete_identity(
    state: StateDep, principal: AdminKeyDep, identity_id: IdentityId
) -> Response:
    """Rows and index vectors are gone when this returns; the id then answers 404."""
    await anyio.to_thread.run_sync(identities.delete_identity, state, principal, identity_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
