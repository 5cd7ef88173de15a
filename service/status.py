"""Readiness, statistics and index maintenance (the logic behind the ops endpoints)."""

from __future__ import annotations

import logging
import time

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from service.db.models import Gallery, Identity, Template
from service.schemas import (
    IndexCheckResponse,
    IndexRebuildResponse,
    IndexSummary,
    ModelSummary,
    ReadinessChecks,
    ReadinessResponse,
    StatsResponse,
)
from service.state import ServiceState

logger = logging.getLogger(__name__)

_MAX_LISTED_IDS = 100


def stale_count(state: ServiceState) -> int:
    """Templates embedded by another model than the loaded one (never compared)."""
    with state.db.session() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(Template)
                .where(Template.model_sha256 != state.model.sha256)
            )
            or 0
        )


def without_counts(body: ReadinessResponse) -> ReadinessResponse:
    """The readiness answer for callers that may not see how many people are enrolled."""
    return body.model_copy(
        update={"templates": None, "index_templates": None, "stale_templates": None}
    )


def readiness(state: ServiceState | None) -> ReadinessResponse:
    """Ready when the database answers, the model is loaded and the index equals SQL.

    The index is compared after catching up with other processes' committed changes (in the
    same snapshot), so a replica a few milliseconds behind is ready and one that lost a vector
    or stopped following the change log is not.
    """
    if state is None or not state.ready:
        return ReadinessResponse(
            status="not_ready",
            checks=ReadinessChecks(database=False, model=False, index=False),
            templates=None,
            index_templates=None,
            stale_templates=None,
            model_version=None,
            detail="starting up or shutting down",
        )
    try:
        state.db.ping()
        in_db, in_index = state.indexes.counts()
        stale = stale_count(state)
    except SQLAlchemyError as exc:
        logger.warning("readiness: database unreachable: %s", exc)
        return ReadinessResponse(
            status="not_ready",
            checks=ReadinessChecks(database=False, model=True, index=False),
            templates=None,
            index_templates=len(state.indexes),
            stale_templates=None,
            model_version=state.model.version,
            detail=f"database unreachable: {type(exc).__name__}",
        )
    following = state.follower.alive
    index_ok = in_db == in_index and following
    if not following:
        detail: str | None = "not following other processes' changes (see the log); restart it"
    elif in_db != in_index:
        detail = "the index and SQL hold different templates; run `gaitid index rebuild`"
    else:
        detail = None
    return ReadinessResponse(
        status="ready" if index_ok else "not_ready",
        checks=ReadinessChecks(database=True, model=True, index=index_ok),
        templates=in_db,
        index_templates=in_index,
        stale_templates=stale,
        model_version=state.model.version,
        detail=detail,
    )


def stats(state: ServiceState) -> StatsResponse:
    info = state.model
    with state.db.session() as session:
        galleries = int(session.scalar(select(func.count()).select_from(Gallery)) or 0)
        identities = int(session.scalar(select(func.count()).select_from(Identity)) or 0)
        templates = state.indexes.count_in_db(session)
    return StatsResponse(
        model=ModelSummary(
            name=info.name,
            variant=info.variant,
            version=info.version,
            sha256=info.sha256,
            embedding_dim=info.embedding_dim,
            default_threshold=info.default_threshold,
            providers=list(state.embedder.providers),
        ),
        galleries=galleries,
        identities=identities,
        templates=templates,
        stale_templates=stale_count(state),
        index=IndexSummary(
            kind=state.settings.index_kind, size=len(state.indexes), galleries=galleries
        ),
    )


def check_index(state: ServiceState) -> IndexCheckResponse:
    report = state.indexes.check()
    return IndexCheckResponse(
        consistent=report.consistent,
        db_templates=report.db_templates,
        index_templates=report.index_templates,
        missing_from_index=report.missing_from_index[:_MAX_LISTED_IDS],
        extra_in_index=report.extra_in_index[:_MAX_LISTED_IDS],
    )


def rebuild_index(state: ServiceState) -> IndexRebuildResponse:
    start = time.perf_counter()
    sizes = state.indexes.rebuild()
    return IndexRebuildResponse(
        templates=sum(sizes.values()),
        galleries=len(sizes),
        seconds=time.perf_counter() - start,
    )
