"""Operations endpoints: liveness, readiness, Prometheus metrics and statistics."""

from __future__ import annotations

import hmac

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gaitid.service import health as logic
from gaitid.service.deps import EnrollKeyDep, StateDep
from gaitid.service.errors import AuthenticationError, error_responses
from gaitid.service.metrics import CONTENT_TYPE_LATEST
from gaitid.service.schemas import HealthResponse, ReadinessResponse, StatsResponse

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=HealthResponse, summary="Liveness")
async def healthz() -> HealthResponse:
    """The process is up and serving HTTP (says nothing about the database or model)."""
    return HealthResponse()


@router.get(
    "/readyz",
    response_model=ReadinessResponse,
    summary="Readiness",
    responses={503: {"model": ReadinessResponse, "description": "Not ready; see `checks`."}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready: database reachable, model loaded, and the index holds exactly the current
    model's templates in SQL. The template counts (current, in the index, stale) are shown
    to callers that may read ``/metrics``: anyone unless ``GAITID_METRICS_TOKEN`` is set,
    then only with that token; the others get ``null`` counts and the same status."""
    state = getattr(request.app.state, "service", None)
    body = await anyio.to_thread.run_sync(logic.readiness, state)
    if not _may_read_operations(request):
        body = logic.without_counts(body)
    code = 200 if body.status == "ready" else 503
    return JSONResponse(body.model_dump(mode="json"), status_code=code)


def _may_read_operations(request: Request) -> bool:
    """True when ``GAITID_METRICS_TOKEN`` is unset or presented as a bearer token."""
    state = getattr(request.app.state, "service", None)
    token = state.settings.metrics_token if state is not None else None
    if token is None:
        return True
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value()
    return scheme.lower() == "bearer" and hmac.compare_digest(presented, expected)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(request: Request) -> Response:
    """Open unless ``GAITID_METRICS_TOKEN`` is set; then a bearer token is required."""
    if not _may_read_operations(request):
        raise AuthenticationError("/metrics needs 'Authorization: Bearer <GAITID_METRICS_TOKEN>'")
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/stats",
    response_model=StatsResponse,
    summary="Model, gallery and index statistics",
    responses=error_responses(401, 403, 503),
)
async def stats(state: StateDep, principal: EnrollKeyDep) -> StatsResponse:
    """A key bound to galleries sees the counts of those galleries only."""
    return await anyio.to_thread.run_sync(logic.stats, state, principal)
