"""``POST /verify``: is this walk the given identity (1:1)?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form

from gaitid.service import verify as logic
from gaitid.service.db.models import MAX_ID
from gaitid.service.deps import IdentifyKeyDep, StateDep
from gaitid.service.errors import InvalidRequestError, error_responses
from gaitid.service.schemas import GALLERY_PATTERN, VerifyResponse, identity_name
from gaitid.service.walks.forms import (
    BackgroundField,
    InputField,
    StrictFormRoute,
    TrackField,
    WalkFile,
)
from gaitid.service.walks.uploads import WalkChoice, read_upload

router = APIRouter(tags=["identification"], route_class=StrictFormRoute)


@router.post(
    "/verify",
    response_model=VerifyResponse,
    summary="Verify a walk against one identity",
    responses=error_responses(401, 403, 404, 409, 413, 422, 503, 504),
)
async def verify(
    state: StateDep,
    principal: IdentifyKeyDep,
    file: WalkFile,
    identity_id: Annotated[
        int | None, Form(ge=1, le=MAX_ID, description="The identity's id.")
    ] = None,
    identity: Annotated[
        str | None,
        Form(
            min_length=1,
            max_length=256,
            description="Or its name in `gallery`.",
        ),
    ] = None,
    gallery_name: Annotated[str, Form(alias="gallery", pattern=GALLERY_PATTERN)] = "default",
    threshold: Annotated[float | None, Form(ge=-1.0, le=1.0)] = None,
    input_kind: InputField = "auto",
    background: BackgroundField = None,
    track: TrackField = None,
) -> VerifyResponse:
    """Give exactly one of `identity_id` or `identity`. 409 when the identity has no template
    of the current model."""
    if identity is not None:
        try:
            identity = identity_name(identity)
        except ValueError as exc:
            raise InvalidRequestError(str(exc)) from None
    upload = await read_upload(
        file,
        state.settings.max_upload_bytes,
        input_kind=input_kind,
        background=background,
        choice=WalkChoice(track=track, one_person_only=True),
    )
    return await logic.verify(
        state, principal, upload, identity_id, identity, gallery_name, threshold
    )
