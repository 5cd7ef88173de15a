"""``/admin/index``: compare the in-memory index with SQL, or rebuild it from SQL."""

from __future__ import annotations

import anyio
from fastapi import APIRouter

from gaitid.service import admin as logic
from gaitid.service.deps import AdminKeyDep, StateDep
from gaitid.service.errors import error_responses
from gaitid.service.schemas import IndexCheckResponse, IndexRebuildResponse

router = APIRouter(prefix="/admin/index", tags=["operations"])


@router.get(
    "/check",
    response_model=IndexCheckResponse,
    summary="Consistency check of index vs SQL",
    responses=error_responses(401, 403, 503),
)
async def check(state: StateDep, principal: AdminKeyDep) -> IndexCheckResponse:
    principal.require_every_gallery("the index check")
    return await anyio.to_thread.run_sync(logic.check_index, state)


@router.post(
    "/rebuild",
    response_model=IndexRebuildResponse,
    summary="Rebuild the index from SQL",
    responses=error_responses(401, 403, 503),
)
async def rebuild(state: StateDep, principal: AdminKeyDep) -> IndexRebuildResponse:
    """Blocks enrolments and deletions while it runs (they wait for the index lock)."""
    principal.require_every_gallery("the index rebuild")
    return await anyio.to_thread.run_sync(logic.rebuild_index, state)
