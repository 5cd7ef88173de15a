"""``POST /preview``: how an upload would be read, and the strip of what the model would see."""

from __future__ import annotations

from fastapi import APIRouter

from gaitid.service import preview as logic
from gaitid.service.deps import AnyKeyDep, StateDep
from gaitid.service.errors import error_responses
from gaitid.service.schemas import PreviewResponse
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
    "/preview",
    response_model=PreviewResponse,
    summary="Read an upload without enrolling it: frames used and dropped, preview strip",
    responses=error_responses(401, 413, 422, 503, 504),
)
async def preview(
    state: StateDep,
    principal: AnyKeyDep,
    file: WalkFile,
    input_kind: InputField = "auto",
    background: BackgroundField = None,
    people: PeopleField = "one",
    track: TrackField = None,
) -> PreviewResponse:
    """The same fields, limits and errors as `/identify`'s upload; nothing is embedded or
    stored. Footage with several people: `input.tracks` lists them, `track` previews one,
    `people=all` everyone (each tinted in their colour with their number). Any key (enrol
    and identify both upload walks)."""
    upload = await read_upload(
        file,
        state.settings.max_upload_bytes,
        input_kind=input_kind,
        background=background,
        choice=walk_choice(people, track, what="previews"),
    )
    return await logic.preview(state, upload)
