"""``/galleries``: galleries as resources (create, list, read, change, erase)."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Response, status

from gaitid.service import galleries as gallery
from gaitid.service.deps import AdminKeyDep, EnrollKeyDep, SessionDep, StateDep
from gaitid.service.errors import error_responses
from gaitid.service.schemas import GALLERY_PATTERN, GalleryCreate, GalleryInfo, GalleryUpdate

router = APIRouter(prefix="/galleries", tags=["galleries"])

GalleryName = Annotated[str, Path(pattern=GALLERY_PATTERN, examples=["lobby"])]


@router.get(
    "",
    response_model=list[GalleryInfo],
    summary="The galleries this key may use",
    responses=error_responses(401, 403, 503),
)
def list_galleries(
    state: StateDep, session: SessionDep, principal: EnrollKeyDep
) -> list[GalleryInfo]:
    return gallery.list_galleries(session, principal, state.model.sha256)


@router.post(
    "",
    response_model=GalleryInfo,
    status_code=status.HTTP_201_CREATED,
    summary="Create a gallery",
    responses=error_responses(401, 403, 409, 422, 503),
)
async def create_gallery(
    state: StateDep, principal: AdminKeyDep, body: GalleryCreate
) -> GalleryInfo:
    """409 when a gallery of that name exists. Enrolling into a missing gallery also creates
    it unless ``GAITID_IMPLICIT_GALLERIES`` is off."""
    return await anyio.to_thread.run_sync(gallery.create_gallery, state, principal, body)


@router.get(
    "/{name}",
    response_model=GalleryInfo,
    summary="One gallery",
    responses=error_responses(401, 403, 404, 422, 503),
)
def get_gallery(
    state: StateDep, session: SessionDep, principal: EnrollKeyDep, name: GalleryName
) -> GalleryInfo:
    return gallery.get_gallery(session, principal, name, state.model.sha256)


@router.patch(
    "/{name}",
    response_model=GalleryInfo,
    summary="Change a gallery's default threshold or metadata",
    responses=error_responses(401, 403, 404, 422, 503),
)
async def update_gallery(
    state: StateDep, principal: AdminKeyDep, name: GalleryName, body: GalleryUpdate
) -> GalleryInfo:
    """Absent fields stay as they are; ``null`` clears one."""
    return await anyio.to_thread.run_sync(gallery.update_gallery, state, principal, name, body)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Erase a gallery and everyone in it",
    responses=error_responses(401, 403, 404, 422, 503),
)
async def delete_gallery(state: StateDep, principal: AdminKeyDep, name: GalleryName) -> Response:
    """Every identity, template and vector of the gallery goes in one transaction (from SQL,
    this process's index and every replica's); the gallery answers 404 afterwards."""
    await anyio.to_thread.run_sync(gallery.delete_gallery, state, principal, name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
