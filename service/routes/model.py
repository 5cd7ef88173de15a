"""``/model``: the loaded model, its default threshold, and its model card's DET picture."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Response

from gaitid.service import model as logic
from gaitid.service.deps import AnyKeyDep, StateDep
from gaitid.service.errors import error_responses
from gaitid.service.schemas import ModelResponse

router = APIRouter(prefix="/model", tags=["operations"])


@router.get(
    "",
    response_model=ModelResponse,
    summary="The loaded model and its default threshold",
    responses=error_responses(401, 503),
)
async def describe(state: StateDep, principal: AnyKeyDep) -> ModelResponse:
    """Any valid key. The threshold a decision uses when neither the request nor the
    gallery sets one, and its source; and the model's threshold for camera clips, if any."""
    return await anyio.to_thread.run_sync(logic.describe, state)


@router.get(
    "/det.png",
    summary="The DET picture of the model card",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "PNG image."},
        **error_responses(401, 404, 503),
    },
)
async def det_picture(state: StateDep, principal: AnyKeyDep) -> Response:
    """Any valid key. 404 when the model file has no picture beside it
    (`<model name up to its first '.'>-det.png`)."""
    data = await anyio.to_thread.run_sync(logic.det_picture, state)
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-cache"})
