"""Identification (1:N within a gallery): rank its identities against one walk.

Only templates of the loaded model are compared (the index holds nothing else). Identify
returns the best template per identity: it fetches a few index hits per wanted identity and
widens the search until ``top_k`` distinct identities qualify or the gallery is exhausted.
An index hit whose row a concurrent delete has just committed is dropped (SQL wins).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from gaitid.preprocess import PreprocessedSequence
from gaitid.service.auth import Principal
from gaitid.service.common import (
    Decision,
    GalleryRef,
    audit,
    decide,
    elapsed_ms,
    gallery_ref,
    threshold_route,
)
from gaitid.service.db.models import Identity, Template
from gaitid.service.errors import InvalidRequestError
from gaitid.service.schemas import IdentifyResponse, Match, PersonMatches, ThresholdRoute
from gaitid.service.state import ServiceState
from gaitid.service.walks.embedding import embed_upload, track_info
from gaitid.service.walks.uploads import Upload

#: How many index hits are fetched per wanted identity before grouping by identity.
_HITS_PER_IDENTITY = 4


@dataclass(frozen=True)
class SearchOptions:
    """What ``/identify`` may narrow its ranking to (inside the search, before ``top_k``)."""

    min_score: float | None = None
    """Matches scoring below it are left out (distinct from the decision threshold)."""
    where: dict[str, Any] | None = None
    """Identities whose metadata holds each of these top-level keys with an equal value."""

    def admits(self, metadata: dict[str, Any] | None) -> bool:
        if not self.where:
            return True
        held = metadata or {}
        return all(key in held and held[key] == value for key, value in self.where.items())


def _rank(
    state: ServiceState,
    gallery: GalleryRef,
    vector: NDArray[np.float32],
    top_k: int,
    options: SearchOptions | None = None,
) -> list[Match]:
    """Best template per identity, best first, at most ``top_k`` identities.

    ``options`` filter inside the search: the index is searched wider until ``top_k``
    identities qualify, the gallery is exhausted or the scores fall below ``min_score``.
    """
    with state.metrics.search.time():
        return _search(state, gallery, vector, top_k, options or SearchOptions())


def _search(
    state: ServiceState,
    gallery: GalleryRef,
    vector: NDArray[np.float32],
    top_k: int,
    options: SearchOptions,
) -> list[Match]:
    size = state.indexes.gallery_size(gallery.id)
    k = min(size, top_k * _HITS_PER_IDENTITY)
    while True:
        scores, ids = state.indexes.search(gallery.id, vector, max(k, 1))
        if not len(ids):
            return []
        with state.db.session() as session:
            rows = session.execute(
                select(Template.id, Identity.id, Identity.name, Identity.meta)
                .join(Identity, Template.identity_id == Identity.id)
                .where(Template.id.in_(ids.tolist()))
            ).all()
        owner = {
            template_id: (identity_id, name, meta) for template_id, identity_id, name, meta in rows
        }
        best: dict[int, Match] = {}
        below = False
        for score, template_id in zip(scores.tolist(), ids.tolist(), strict=True):
            if options.min_score is not None and score < options.min_score:
                below = True  # scores arrive best first: nothing after this qualifies
                break
            if template_id not in owner:  # deleted a moment ago; SQL wins
                continue
            identity_id, name, meta = owner[template_id]
            if identity_id not in best and options.admits(meta):
                best[identity_id] = Match(
                    identity=name, identity_id=identity_id, template_id=template_id, score=score
                )
        if len(best) >= top_k or k >= size or below:
            return sorted(best.values(), key=lambda m: m.score, reverse=True)[:top_k]
        k = min(size, k * _HITS_PER_IDENTITY)


def _search_and_audit(
    state: ServiceState,
    principal: Principal,
    gallery: GalleryRef,
    vector: NDArray[np.float32],
    top_k: int,
    threshold: float | None,
    route: ThresholdRoute,
    options: SearchOptions,
) -> tuple[list[Match], Decision]:
    matches = _rank(state, gallery, vector, top_k, options)
    decision = decide(
        matches[0].score if matches else None,
        threshold,
        gallery.default_threshold,
        state.model,
        state.settings.fallback_threshold,
        route,
    )
    with state.db.session(write=True) as session:
        audit(
            session,
            "identify",
            principal,
            gallery_id=gallery.id,
            identity_id=matches[0].identity_id if decision.match else None,
            detail={
                "decision": decision.label,
                "returned": len(matches),
                "threshold_route": decision.route,
            },
        )
        session.commit()
    return matches, decision


async def identify(
    state: ServiceState,
    principal: Principal,
    upload: Upload,
    gallery_name: str,
    top_k: int,
    threshold: float | None,
    options: SearchOptions | None = None,
) -> IdentifyResponse:
    """Rank the gallery's identities against one walk and decide match/unknown."""
    start = time.perf_counter()
    principal.require_gallery(gallery_name)
    if top_k > state.settings.max_top_k:
        raise InvalidRequestError(f"top_k={top_k} exceeds the limit {state.settings.max_top_k}")
    gallery = await anyio.to_thread.run_sync(gallery_ref, state, gallery_name)
    walk = await embed_upload(upload, state)
    decoded, embedded = walk.decoded, walk.embedded
    search_start = time.perf_counter()
    walks = walk.everyone or ((decoded.sequence, embedded),)
    answers = await anyio.to_thread.run_sync(
        _search_each,
        state,
        principal,
        gallery,
        [result.vector for _sequence, result in walks],
        top_k,
        threshold,
        threshold_route(decoded.sequence),
        options or SearchOptions(),
    )
    for _matches, each in answers:
        state.metrics.decisions.labels(each.label).inc()
    main = next(i for i, (sequence, _result) in enumerate(walks) if sequence is decoded.sequence)
    matches, decision = answers[main]
    return IdentifyResponse(
        gallery=gallery.name,
        matches=matches,
        decision=decision.label,
        threshold=decision.threshold,
        threshold_source=decision.source,
        threshold_route=decision.route,
        model_version=state.model.version,
        frames_used=int(decoded.sequence.frames.shape[0]),
        input=walk.input_report(),
        timings=walk.timings(total_ms=elapsed_ms(start), search_ms=elapsed_ms(search_start)),
        people=(
            [
                _person(sequence, found, each.label)
                for (sequence, _result), (found, each) in zip(walks, answers, strict=True)
            ]
            if walk.everyone
            else None
        ),
    )


def _search_each(
    state: ServiceState,
    principal: Principal,
    gallery: GalleryRef,
    vectors: list[NDArray[np.float32]],
    top_k: int,
    threshold: float | None,
    route: ThresholdRoute,
    options: SearchOptions,
) -> list[tuple[list[Match], Decision]]:
    """:func:`_search_and_audit` for each walk of a clip (one audit row each); the walks of
    one upload share its input ``route``."""
    return [
        _search_and_audit(state, principal, gallery, vector, top_k, threshold, route, options)
        for vector in vectors
    ]


def _person(
    sequence: PreprocessedSequence, matches: list[Match], decision: Literal["match", "unknown"]
) -> PersonMatches:
    """One person of a clip and their answer (``people=all``)."""
    person = sequence.person
    if person is None:  # silhouettes: one walk, the whole upload
        return PersonMatches(
            track=1,
            first_frame=0,
            last_frame=max(0, sequence.total - 1),
            frames_used=sequence.used,
            box=None,
            matches=matches,
            decision=decision,
        )
    return PersonMatches(
        track=person.track,
        first_frame=person.first_frame,
        last_frame=person.last_frame,
        frames_used=sequence.used,
        box=track_info(person).box,
        matches=matches,
        decision=decision,
    )
