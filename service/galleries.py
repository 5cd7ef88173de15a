"""Shared rules of the logic modules, and the galleries themselves.

SQL is the source of truth everywhere: a change is written and flushed in one transaction,
then committed and applied to the in-memory index under one lock (``GalleryIndexes``), so the
index never misses a committed template after the request returns and never keeps an erased
one. The logic modules (``enrollment``, ``matching``, ``identities``) use the helpers here:
one get-or-404, race-safe get-or-create for galleries and identities, the threshold
precedence and the audit row.

Threshold precedence: the request's, else the gallery's default, else the model's calibrated
default (ONNX metadata ``default_threshold``), else ``Settings.fallback_threshold``.

Blocking work (SQL, FAISS) runs in worker threads; the async functions of the logic modules
are called from the event loop.
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth import Principal
from service.db.models import AuditLog, Base, Gallery, Identity, Template
from service.errors import ConflictError, NotFoundError
from service.schemas import GalleryCreate, GalleryInfo, GalleryUpdate, ThresholdSource
from service.state import ServiceState

logger = logging.getLogger(__name__)

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


def resolve_threshold(
    requested: float | None,
    gallery_default: float | None,
    model_default: float | None,
    fallback: float,
) -> tuple[float, ThresholdSource]:
    """The decision threshold and where it came from (see the module docstring)."""
    if requested is not None:
        return requested, "request"
    if gallery_default is not None:
        return gallery_default, "gallery"
    if model_default is not None:
        return model_default, "model"
    return fallback, "fallback"


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


def _gallery_info(session: Session, gallery: Gallery, model_sha: str) -> GalleryInfo:
    identities = session.scalar(
        select(func.count()).select_from(Identity).where(Identity.gallery_id == gallery.id)
    )
    templates = session.scalar(
        select(func.count())
        .select_from(Template)
        .join(Identity, Template.identity_id == Identity.id)
        .where(Identity.gallery_id == gallery.id, Template.model_sha256 == model_sha)
    )
    return GalleryInfo(
        name=gallery.name,
        default_threshold=gallery.default_threshold,
        metadata=gallery.meta,
        identities=int(identities or 0),
        templates=int(templates or 0),
        created_at=gallery.created_at,
    )


def list_galleries(session: Session, principal: Principal, model_sha: str) -> list[GalleryInfo]:
    """Every gallery the key may use, by name."""
    galleries = session.scalars(select(Gallery).order_by(Gallery.name)).all()
    return [_gallery_info(session, g, model_sha) for g in galleries if principal.may_use(g.name)]


def get_gallery(session: Session, principal: Principal, name: str, model_sha: str) -> GalleryInfo:
    principal.require_gallery(name)
    return _gallery_info(session, gallery_by_name(session, name), model_sha)


def create_gallery(state: ServiceState, principal: Principal, body: GalleryCreate) -> GalleryInfo:
    """A new, empty gallery; :class:`ConflictError` (409) when the name is taken."""
    principal.require_gallery(body.name)
    with state.db.session(write=True) as session:
        try:
            with session.begin_nested():
                gallery = Gallery(
                    name=body.name, default_threshold=body.default_threshold, meta=body.metadata
                )
                session.add(gallery)
        except IntegrityError:
            raise ConflictError(f"gallery {body.name!r} exists already") from None
        audit(session, "gallery.create", principal, gallery_id=gallery.id)
        session.commit()
        return _gallery_info(session, gallery, state.model.sha256)


def update_gallery(
    state: ServiceState, principal: Principal, name: str, update: GalleryUpdate
) -> GalleryInfo:
    """Change the fields present in ``update`` (``null`` clears one)."""
    principal.require_gallery(name)
    changes = update.model_dump(exclude_unset=True)
    with state.db.session(write=True) as session:
        gallery = gallery_by_name(session, name)
        if "default_threshold" in changes:
            gallery.default_threshold = update.default_threshold
        if "metadata" in changes:
            gallery.meta = update.metadata
        audit(
            session,
            "gallery.update",
            principal,
            gallery_id=gallery.id,
            detail={"fields": sorted(changes)},
        )
        session.commit()
        return _gallery_info(session, gallery, state.model.sha256)


def delete_gallery(state: ServiceState, principal: Principal, name: str) -> int:
    """Erase a gallery with every identity, template and vector in it, in one transaction.

    The same guarantees as an identity's erasure (``service.identities``): the rows go in one
    transaction, the vectors leave this process's index at commit and every replica's through
    the change log, and SQLite's WAL is checkpointed before the answer. Returns how many
    templates went.
    """
    principal.require_gallery(name)
    with state.db.session(write=True) as session:
        gallery = session.scalars(
            select(Gallery).where(Gallery.name == name).with_for_update()
        ).one_or_none()
        if gallery is None:
            raise NotFoundError(f"gallery {name!r} not found")
        gallery_id = gallery.id
        template_ids = np.asarray(
            session.scalars(
                select(Template.id)
                .join(Identity, Template.identity_id == Identity.id)
                .where(Identity.gallery_id == gallery_id)
            ).all(),
            np.int64,
        )
        session.delete(gallery)
        audit(
            session,
            "gallery.delete",
            principal,
            gallery_id=gallery_id,
            detail={"templates": len(template_ids)},
        )
        state.indexes.commit_remove(session, gallery_id, template_ids)
    state.indexes.drop_gallery(gallery_id)
    state.db.flush_erasures()
    logger.info("erased gallery %d with %d templates", gallery_id, len(template_ids))
    return len(template_ids)
