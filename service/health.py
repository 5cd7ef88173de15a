"""Readiness and statistics (``/readyz``, ``/stats``)."""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from gaitid.service.auth import Principal
from gaitid.service.db.models import Gallery, Identity, Template
from gaitid.service.errors import StorageError
from gaitid.service.schemas import (
    IndexSummary,
    ModelSummary,
    ReadinessChecks,
    ReadinessResponse,
    StatsResponse,
)
from gaitid.service.state import ServiceState

logger = logging.getLogger(__name__)


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
    except StorageError as exc:
        # logged once per outage by the database's circuit, not once per probe
        return ReadinessResponse(
            status="not_ready",
            checks=ReadinessChecks(database=False, model=True, index=False),
            templates=None,
            index_templates=len(state.indexes),
            stale_templates=None,
            model_version=state.model.version,
            detail=str(exc),
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


def stats(state: ServiceState, principal: Principal) -> StatsResponse:
    """Model, gallery and index statistics; a key bound to galleries sees those only."""
    info = state.model
    with state.db.session() as session:
        gallery_stmt = select(Gallery.id)
        if principal.galleries is not None:
            gallery_stmt = gallery_stmt.where(Gallery.name.in_(sorted(principal.galleries)))
        gallery_ids = list(session.scalars(gallery_stmt))
        identities = int(
            session.scalar(
                select(func.count())
                .select_from(Identity)
                .where(Identity.gallery_id.in_(gallery_ids))
            )
            or 0
        )
        per_model = session.execute(
            select(Template.model_sha256, func.count())
            .join(Identity, Template.identity_id == Identity.id)
            .where(Identity.gallery_id.in_(gallery_ids))
            .group_by(Template.model_sha256)
        ).all()
    current = sum(int(n) for sha, n in per_model if sha == info.sha256)
    stale = sum(int(n) for sha, n in per_model if sha != info.sha256)
    return StatsResponse(
        model=ModelSummary(
            name=info.name,
            variant=info.variant,
            version=info.version,
            sha256=info.sha256,
            embedding_dim=info.embedding_dim,
            default_threshold=info.default_threshold,
            clip_threshold=info.clip_threshold,
            providers=list(state.embedder.providers),
        ),
        galleries=len(gallery_ids),
        identities=identities,
        templates=current,
        stale_templates=stale,
        index=IndexSummary(
            kind=state.settings.index_kind,
            size=sum(state.indexes.gallery_size(g) for g in gallery_ids),
            galleries=len(gallery_ids),
        ),
    )
