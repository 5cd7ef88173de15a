"""``POST /identify``: who in a gallery is this walk?"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form

from gaitid.service import identify as logic
from gaitid.service.deps import IdentifyKeyDep, StateDep
from gaitid.service.errors import InvalidRequestError, error_responses
from gaitid.service.schemas import GALLERY_PATTERN, IdentifyResponse, parse_metadata
from gaitid.service.walks.forms import (
    BackgroundField,
    InputField,
    PeopleField,
    StrictFormRoute,
    TrackField,
    WalkFile,
    walk_choice,
)
from gaitid.service.walks.uploads import read_upload

router = APIRouter(tags=["identification"], route_class=StrictFormRoute)


@router.post(
    "/identify",
    response_model=IdentifyResponse,
    summary="Rank a gallery's identities against a walk",
    responses=error_responses(401, 403, 404, 413, 422, 503, 504),
)
async def identify(
    state: StateDep,
    principal: IdentifyKeyDep,
    file: WalkFile,
    top_k: Annotated[int, Form(ge=1, le=1000, description="Identities to return.")] = 5,
    threshold: Annotated[
        float | None,
        Form(ge=-1.0, le=1.0, description="Decision threshold; default: gallery, model, fallback."),
    ] = None,
    gallery_name: Annotated[str, Form(alias="gallery", pattern=GALLERY_PATTERN)] = "default",
    min_score: Annotated[
        float | None,
        Form(
            ge=-1.0,
            le=1.0,
            description="Leave out matches scoring below this (the decision threshold is "
            "separate: it decides match/unknown on the best score).",
        ),
    ] = None,
    identity_filter: Annotated[
        str | None,
        Form(
            alias="filter",
            description="A JSON object: only identities whose metadata holds each of these "
            "top-level keys with an equal value. Applied inside the search, so `top_k` "
            "identities come back when that many qualify.",
            examples=['{"site": "north"}'],
        ),
    ] = None,
    input_kind: InputField = "auto",
    background: BackgroundField = None,
    people: PeopleField = "one",
    track: TrackField = None,
) -> IdentifyResponse:
    """Best template per identity, by cosine similarity, with a match/unknown decision; for
    footage with several people, of one person (`track`, else the one with the most usable
    frames) or, with `people=all`, of each (`people`)."""
    try:
        where = parse_metadata(identity_filter, "filter")
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None
    options = logic.SearchOptions(min_score=min_score, where=where)
    upload = await read_upload(
        file,
        state.settings.max_upload_bytes,
        input_kind=input_kind,
        background=background,
        choice=walk_choice(people, track, what="identifies"),
    )
    return await logic.identify(state, principal, upload, gallery_name, top_k, threshold, options)
