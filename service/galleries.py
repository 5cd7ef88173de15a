"""Galleries as resources: create, list, read, change and erase (``/galleries``).

Erasing a gallery has the guarantees of erasing an identity (``service.identities``): every
row goes in one transaction, the vectors leave this process's index at commit and every
replica's through the change log.
"""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gaitid.service.auth import Principal
from gaitid.service.common import audit, gallery_by_name
from gaitid.service.db.models import Gallery, Identity, Template
from gaitid.service.errors import ConflictError, NotFoundError
from gaitid.service.schemas import GalleryCreate, GalleryInfo, GalleryUpdate
from gaitid.service.state import ServiceState

logger = logging.getLogger(__name__)


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
