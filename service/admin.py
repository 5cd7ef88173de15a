"""Index maintenance (``/admin/index/check``, ``/admin/index/rebuild``)."""

from __future__ import annotations

import time

from gaitid.service.schemas import (
    IndexCheckResponse,
    IndexRebuildResponse,
)
from gaitid.service.state import ServiceState

_MAX_LISTED_IDS = 100


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
