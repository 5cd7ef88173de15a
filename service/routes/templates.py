"""``/templates``: erase one enrolled walk."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Response, status

from gaitid.service import templates as logic
from gaitid.service.db.models import MAX_ID
from gaitid.service.deps import AdminKeyDep, StateDep
from gaitid.service.errors import error_responses

router = APIRouter(prefix="/templates", tags=["identities"])


@router.delete(
    "/{template_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Erase one template",
    responses=error_responses(401, 403, 404, 422, 503),
)
async def delete_template(
    state: StateDep,
    principal: AdminKeyDep,
    template_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Response:
    await anyio.to_thread.run_sync(logic.delete_template, state, principal, template_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
