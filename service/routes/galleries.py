"""``/galleries``: list galleries and set their default decision threshold."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path

from service import gallery
from service.deps import AdminKeyDep, EnrollKeyDep, SessionDep, StateDep
from service.errors import error_responses
from service.schemas import GALLERY_PATTERN, GalleryInfo, GalleryUpdate

router = APIRouter(prefix="/galleries", tags=["galleries"])


@router.get(
    "",
    response_model=list[GalleryInfo],
    summary="All galleries",
    responses=error_responses(401, 403, 503),
)
def list_galleries(
    state: StateDep, session: SessionDep, _principal: EnrollKeyDep
) -> list[GalleryInfo]:
    return gallery.list_galleries(session, state.model.sha256)


@router.patch(
    "/{name}",
    response_model=GalleryInfo,
    summary="Set or clear a gallery's default threshold",
    responses=error_responses(401, 403, 404, 422, 503),
)
async def update_gallery(
    state: StateDep,
    principal: AdminKeyDep,
    name: Annotated[str, Path(pattern=GALLERY_PATTERN)],
    body: GalleryUpdate,
) -> GalleryInfo:
    return await anyio.to_thread.run_sync(gallery.update_gallery, state, principal, name, body)
