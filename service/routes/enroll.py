"""``POST /enroll``: add one walk of a person to a gallery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Response, status

from gaitid.service import enroll as enrollment
from gaitid.service.deps import EnrollKeyDep, StateDep
from gaitid.service.errors import InvalidRequestError, error_responses
from gaitid.service.schemas import (
    GALLERY_PATTERN,
    TEXT_PATTERN,
    EnrollResponse,
    identity_name,
    parse_metadata,
    storable_text,
)
from gaitid.service.walks.forms import (
    BackgroundField,
    InputField,
    StrictFormRoute,
    TrackField,
    WalkFile,
)
from gaitid.service.walks.uploads import WalkChoice, read_upload

router = APIRouter(tags=["enrolment"], route_class=StrictFormRoute)


@router.post(
    "/enroll",
    response_model=EnrollResponse,
    status_code=status.HTTP_201_CREATED,
    summary="Enrol a walk for an identity",
    responses={
        200: {"model": EnrollResponse, "description": "This content was already enrolled."},
        **error_responses(401, 403, 413, 422, 503, 504),
    },
)
async def enroll(
    response: Response,
    state: StateDep,
    principal: EnrollKeyDep,
    file: WalkFile,
    identity: Annotated[
        str,
        Form(
            min_length=1,
            max_length=256,
            description="Your name or id for the person (stored NFC, trimmed; control and "
            "format characters are refused).",
            examples=["alice"],
        ),
    ],
    gallery_name: Annotated[
        str, Form(alias="gallery", pattern=GALLERY_PATTERN, description="Gallery to enrol into.")
    ] = "default",
    view: Annotated[str | None, Form(max_length=64, pattern=TEXT_PATTERN, examples=["090"])] = None,
    condition: Annotated[
        str | None, Form(max_length=64, pattern=TEXT_PATTERN, examples=["nm-01"])
    ] = None,
    metadata: Annotated[
        str | None,
        Form(
            description="A JSON object stored with the template.", examples=['{"camera": "lobby"}']
        ),
    ] = None,
    input_kind: InputField = "auto",
    background: BackgroundField = None,
    track: TrackField = None,
) -> EnrollResponse:
    """Creates the identity if new. The same bytes enrolled again for the same identity return
    the existing template with status 200 instead of a duplicate."""
    try:
        fields = enrollment.EnrollFields(
            identity=identity_name(identity),
            gallery=gallery_name,
            view=storable_text(view) if view is not None else None,
            condition=storable_text(condition) if condition is not None else None,
            metadata=parse_metadata(metadata),
        )
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    upload = await read_upload(
        file,
        state.settings.max_upload_bytes,
        input_kind=input_kind,
        background=background,
        choice=WalkChoice(track=track, one_person_only=True),
    )
    result = await enrollment.enroll(state, principal, upload, fields)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return result
