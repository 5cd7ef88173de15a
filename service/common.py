"""What the logic modules share: lookups, race-safe get-or-create, the decision, audit.

SQL is the source of truth everywhere: a change is written and flushed in one transaction,
then committed and applied to the in-memory index under one lock (``GalleryIndexes``), so the
index never misses a committed template after the request returns and never keeps an erased
one. The logic modules (``enroll``, ``identify``, ``verify``, ``identities``, ``templates``,
``galleries``) use the helpers here: one get-or-404, race-safe get-or-create for galleries
and identities, the match/unknown decision (:func:`decide`) and the audit row.

Blocking work (SQL, FAISS) runs in worker threads; the async functions of the logic modules
are called from the event loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gaitid.contract import ContractMetadata
from gaitid.preprocess import PreprocessedSequence
from gaitid.service.auth import Principal
from gaitid.service.db.models import AuditLog, Base, Gallery, Identity
from gaitid.service.errors import NotFoundError
from gaitid.service.schemas import ThresholdRoute, ThresholdSource
from gaitid.service.state import ServiceState

RowT = TypeVar("RowT", bound=Base)


def get_or_404(
    session: Session, model: type[RowT], row_id: int, what: str, *, for_update: bool = False
) -> RowT:
    """The row with primary key ``row_id`` or :class:`NotFoundError` naming it.

    ``for_update`` locks the row until commit (PostgreSQL; SQLite's write transactions
    already exclude each other).
    """
    row = session.get(model, row_id, with_for_update=for_update)
    if row is None:
        raise NotFoundError(f"{what} {row_id} not found")
    return row


def gallery_by_name(session: Session, name: str) -> Gallery:
    """The gallery called ``name`` or :class:`NotFoundError`."""
    row = session.scalars(select(Gallery).where(Gallery.name == name)).one_or_none()
    if row is None:
        raise NotFoundError(
            f"gallery {name!r} not found (create it with POST /galleries, or by enrolling into it)"
        )
    return row


@dataclass(frozen=True)
class Decision:
    """Whether a walk matches, the threshold it was held to, where that came from, and the
    input route whose model calibration applied (reported even when the request or the
    gallery named the threshold)."""

    match: bool
    threshold: float
    source: ThresholdSource
    route: ThresholdRoute

    @property
    def label(self) -> Literal["match", "unknown"]:
        return "match" if self.match else "unknown"


def threshold_route(sequence: PreprocessedSequence) -> ThresholdRoute:
    """``clip`` for a walk segmented from camera footage, else ``silhouettes``: the two
    score differently against the same templates, so each has its model calibration."""
    return "clip" if sequence.kind == "video" else "silhouettes"


def model_threshold(model: ContractMetadata, route: ThresholdRoute) -> float | None:
    """The model's calibrated threshold for ``route``: ``clip_threshold`` for clips when the
    model carries one, else ``default_threshold`` (``None`` when it carries neither)."""
    if route == "clip" and model.clip_threshold is not None:
        return model.clip_threshold
    return model.default_threshold


def decide(
    best_score: float | None,
    requested: float | None,
    gallery_default: float | None,
    model: ContractMetadata,
    fallback: float,
    route: ThresholdRoute,
) -> Decision:
    """The one match/unknown rule of identify and verify.

    The threshold is the request's, else the gallery's default, else the model's calibrated
    one for the input's ``route`` (:func:`model_threshold`), else
    ``Settings.fallback_threshold``. The walk matches when its best score reaches it (a score
    equal to the threshold matches); ``best_score`` is ``None`` when there was nothing to
    compare with (an empty gallery).
    """
    threshold: float
    source: ThresholdSource
    model_default = model_threshold(model, route)
    if requested is not None:
        threshold, source = requested, "request"
    elif gallery_default is not None:
        threshold, source = gallery_default, "gallery"
    elif model_default is not None:
        threshold, source = model_default, "model"
    else:
        threshold, source = fallback, "fallback"
    return Decision(best_score is not None and best_score >= threshold, threshold, source, route)


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - start) * 1000.0


def audit(
    session: Session,
    action: str,
    principal: Principal | None,
    *,
    gallery_id: int | None = None,
    identity_id: int | None = None,
    template_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Add an audit row to the session's transaction (committed with the change it records).

    Ids only: names, embeddings and metadata never enter the log, so erasing a person
    leaves nothing personal in it.
    """
    session.add(
        AuditLog(
            action=action,
            api_key_id=principal.key_id if principal else None,
            gallery_id=gallery_id,
            identity_id=identity_id,
            template_id=template_id,
            detail=detail,
        )
    )


def get_or_create_gallery(session: Session, name: str, *, create: bool = True) -> Gallery:
    """The gallery ``name``; created when missing if ``create`` (the implicit-gallery
    setting), else :class:`NotFoundError`."""
    found = session.scalars(select(Gallery).where(Gallery.name == name)).one_or_none()
    if found is not None:
        return found
    if not create:
        raise NotFoundError(
            f"gallery {name!r} not found: create it first with POST /galleries "
            "(GAITID_IMPLICIT_GALLERIES is off)"
        )
    try:
        with session.begin_nested():
            gallery = Gallery(name=name)
            session.add(gallery)
        return gallery
    except IntegrityError:  # created concurrently (PostgreSQL); the row is committed now
        return session.scalars(select(Gallery).where(Gallery.name == name)).one()


def get_or_create_identity(session: Session, gallery: Gallery, name: str) -> Identity:
    stmt = select(Identity).where(Identity.gallery_id == gallery.id, Identity.name == name)
    found = session.scalars(stmt).one_or_none()
    if found is not None:
        return found
    try:
        with session.begin_nested():
            identity = Identity(gallery_id=gallery.id, name=name)
            session.add(identity)
        return identity
    except IntegrityError:
        return session.scalars(stmt).one()


@dataclass(frozen=True)
class GalleryRef:
    """A gallery's id, name and default threshold, read once for a request."""

    id: int
    name: str
    default_threshold: float | None


def gallery_ref(state: ServiceState, name: str) -> GalleryRef:
    with state.db.session() as session:
        gallery = gallery_by_name(session, name)
        return GalleryRef(gallery.id, gallery.name, gallery.default_threshold)
