"""Verification (1:1): is this walk the given identity of the named gallery?

Only templates of the loaded model are compared (filtered by model sha256), and the identity
must belong to the gallery the request names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from gaitid.service.auth import Principal
from gaitid.service.common import (
    GalleryRef,
    audit,
    decide,
    elapsed_ms,
    gallery_by_name,
    get_or_404,
    threshold_route,
)
from gaitid.service.db.models import Identity, Template
from gaitid.service.errors import ConflictError, InvalidRequestError, NotFoundError
from gaitid.service.schemas import VerifyResponse
from gaitid.service.search.gallery_index import vector_from_bytes
from gaitid.service.state import ServiceState
from gaitid.service.walks.embedding import embed_upload
from gaitid.service.walks.uploads import Upload


@dataclass(frozen=True)
class _VerifyTarget:
    identity_id: int
    name: str
    gallery: GalleryRef
    template_ids: NDArray[np.int64]
    vectors: NDArray[np.float32]


def _verify_target(
    state: ServiceState, identity_id: int | None, identity_name: str | None, gallery_name: str
) -> _VerifyTarget:
    with state.db.session() as session:
        gallery = gallery_by_name(session, gallery_name)
        if identity_id is not None:
            identity = get_or_404(session, Identity, identity_id, "identity")
            if identity.gallery_id != gallery.id:  # a request stays inside the gallery it names
                raise NotFoundError(f"identity {identity_id} not found in gallery {gallery_name!r}")
        else:
            found = session.scalars(
                select(Identity).where(
                    Identity.gallery_id == gallery.id, Identity.name == identity_name
                )
            ).one_or_none()
            if found is None:
                raise NotFoundError(
                    f"identity {identity_name!r} not found in gallery {gallery_name!r}"
                )
            identity = found
        gallery_row = identity.gallery
        rows = session.execute(
            select(Template.id, Template.embedding)
            .where(Template.identity_id == identity.id, Template.model_sha256 == state.model.sha256)
            .order_by(Template.id)
        ).all()
        if not rows:
            raise ConflictError(
                f"identity {identity.id} has no templates of the current model "
                f"({state.model.version}); enrol it again to verify against it"
            )
        dim = state.model.embedding_dim
        return _VerifyTarget(
            identity_id=identity.id,
            name=identity.name,
            gallery=GalleryRef(gallery_row.id, gallery_row.name, gallery_row.default_threshold),
            template_ids=np.asarray([r[0] for r in rows], np.int64),
            vectors=np.stack([vector_from_bytes(r[1], dim) for r in rows]),
        )


async def verify(
    state: ServiceState,
    principal: Principal,
    upload: Upload,
    identity_id: int | None,
    identity_name: str | None,
    gallery_name: str,
    threshold: float | None,
) -> VerifyResponse:
    """1:1: is this walk the given identity? Best score over its current templates."""
    start = time.perf_counter()
    principal.require_gallery(gallery_name)
    if (identity_id is None) == (identity_name is None):
        raise InvalidRequestError("give exactly one of identity_id or identity (a name)")
    target = await anyio.to_thread.run_sync(
        _verify_target, state, identity_id, identity_name, gallery_name
    )
    walk = await embed_upload(upload, state)
    decoded, embedded = walk.decoded, walk.embedded
    scores = target.vectors @ embedded.vector
    best = int(np.argmax(scores))
    score = float(scores[best])
    decision = decide(
        score,
        threshold,
        target.gallery.default_threshold,
        state.model,
        state.settings.fallback_threshold,
        threshold_route(decoded.sequence),
    )

    def _record() -> None:
        with state.db.session(write=True) as session:
            audit(
                session,
                "verify",
                principal,
                gallery_id=target.gallery.id,
                identity_id=target.identity_id,
                detail={"match": decision.match, "threshold_route": decision.route},
            )
            session.commit()

    await anyio.to_thread.run_sync(_record)
    return VerifyResponse(
        identity_id=target.identity_id,
        identity=target.name,
        gallery=target.gallery.name,
        score=score,
        match=decision.match,
        threshold=decision.threshold,
        threshold_source=decision.source,
        threshold_route=decision.route,
        template_id=int(target.template_ids[best]),
        model_version=state.model.version,
        frames_used=int(decoded.sequence.frames.shape[0]),
        input=walk.input_report(),
        timings=walk.timings(total_ms=elapsed_ms(start)),
    )
