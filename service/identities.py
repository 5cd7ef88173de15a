"""Identities and templates: cursor-paginated listing, details, updates and erasure.

Erasure is real: the rows (embedding, stored frames) go in one transaction and the vectors
leave the index under the same lock, so the id answers 404 and nothing matches it afterwards.
Audit rows keep ids only.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

import numpy as np
from sqlalchemy import String, case, cast, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gaitid.service.auth import Principal
from gaitid.service.common import audit, gallery_by_name, get_or_404
from gaitid.service.db.models import MAX_ID, Gallery, Identity, Template
from gaitid.service.errors import ConflictError, InvalidRequestError
from gaitid.service.schemas import (
    IdentityDetail,
    IdentityPage,
    IdentitySummary,
    IdentityUpdate,
    TemplateInfo,
)
from gaitid.service.state import ServiceState

logger = logging.getLogger(__name__)


#: A cursor: the id a page continues after, as 8 big-endian bytes in unpadded base64url.
#: Every string of this shape is a cursor (an id past the last one gives an empty page), so
#: the OpenAPI pattern and the server accept the same strings.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{11}$"


def encode_cursor(after_id: int) -> str:
    return base64.urlsafe_b64encode(after_id.to_bytes(8, "big")).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor continues after (at most ``MAX_ID``); ``cursor`` has passed
    :data:`CURSOR_PATTERN`, which the route checks, else :class:`InvalidRequestError`."""
    try:
        value = int.from_bytes(base64.urlsafe_b64decode(cursor + "="), "big")
    except (binascii.Error, ValueError):
        raise InvalidRequestError(
            f"cursor {cursor[:40]!r} is not one this API returns: 11 characters of base64url"
        ) from None
    return min(value, MAX_ID)


def _template_counts(
    session: Session, identity_ids: list[int], model_sha: str
) -> dict[int, tuple[int, int]]:
    """``identity_id -> (current, stale)`` template counts."""
    if not identity_ids:
        return {}
    current = func.sum(case((Template.model_sha256 == model_sha, 1), else_=0))
    rows = session.execute(
        select(Template.identity_id, current, func.count())
        .where(Template.identity_id.in_(identity_ids))
        .group_by(Template.identity_id)
    ).all()
    return {i: (int(c or 0), int(total) - int(c or 0)) for i, c, total in rows}


def _summary(identity: Identity, gallery: str, counts: tuple[int, int]) -> dict[str, Any]:
    return {
        "id": identity.id,
        "name": identity.name,
        "gallery": gallery,
        "metadata": identity.meta,
        "templates": counts[0],
        "stale_templates": counts[1],
        "created_at": identity.created_at,
        "updated_at": identity.updated_at,
    }


def list_identities(
    session: Session,
    principal: Principal,
    model_sha: str,
    gallery: str | None,
    limit: int,
    cursor: str | None,
    search: str | None = None,
) -> IdentityPage:
    """One page of identities in id order; ``next_cursor`` continues after the last.

    Without ``gallery``, a key bound to galleries sees the identities of those only.
    ``search`` keeps identities whose name or metadata (its JSON text) contains it, ignoring
    case, inside the query, so pages and cursors work as without it (the console's search).
    """
    stmt = select(Identity, Gallery.name).join(Gallery, Identity.gallery_id == Gallery.id)
    if gallery is not None:
        principal.require_gallery(gallery)
        stmt = stmt.where(Identity.gallery_id == gallery_by_name(session, gallery).id)
    elif principal.galleries is not None:
        stmt = stmt.where(Gallery.name.in_(sorted(principal.galleries)))
    if cursor is not None:
        stmt = stmt.where(Identity.id > decode_cursor(cursor))
    if search:
        as_text = cast(Identity.meta, String)  # the stored JSON, on SQLite and PostgreSQL
        stmt = stmt.where(
            or_(
                Identity.name.icontains(search, autoescape=True),
                as_text.icontains(search, autoescape=True),
            )
        )
    rows = session.execute(stmt.order_by(Identity.id).limit(limit + 1)).all()
    page = rows[:limit]
    counts = _template_counts(session, [r[0].id for r in page], model_sha)
    items = [
        IdentitySummary(**_summary(identity, name, counts.get(identity.id, (0, 0))))
        for identity, name in page
    ]
    next_cursor = encode_cursor(page[-1][0].id) if len(rows) > limit else None
    return IdentityPage(items=items, next_cursor=next_cursor)


def identity_detail(
    session: Session, principal: Principal, model_sha: str, identity_id: int
) -> IdentityDetail:
    identity = get_or_404(session, Identity, identity_id, "identity")
    principal.require_gallery(identity.gallery.name)
    templates = [
        TemplateInfo(
            id=t.id,
            model_version=t.model_version,
            stale=t.model_sha256 != model_sha,
            view=t.view,
            condition=t.condition,
            metadata=t.meta,
            frames_used=t.frames_used,
            frames_total=t.frames_total,
            content_sha256=t.content_sha256,
            created_at=t.created_at,
        )
        for t in identity.templates
    ]
    current = sum(not t.stale for t in templates)
    return IdentityDetail(
        **_summary(identity, identity.gallery.name, (current, len(templates) - current)),
        template_list=templates,
    )


def update_identity(
    state: ServiceState, principal: Principal, identity_id: int, update: IdentityUpdate
) -> IdentityDetail:
    """Rename and/or replace the metadata of an identity (409 when the name is taken)."""
    with state.db.session(write=True) as session:
        identity = get_or_404(session, Identity, identity_id, "identity")
        principal.require_gallery(identity.gallery.name)
        changed = sorted(update.model_fields_set)
        if update.name is not None and update.name != identity.name:
            taken = session.scalars(
                select(Identity.id).where(
                    Identity.gallery_id == identity.gallery_id, Identity.name == update.name
                )
            ).first()
            if taken is not None:
                raise ConflictError(
                    f"gallery already has an identity named {update.name!r} (id {taken})"
                )
            identity.name = update.name
        if "metadata" in update.model_fields_set:
            identity.meta = update.metadata
        audit(
            session,
            "identity.update",
            principal,
            gallery_id=identity.gallery_id,
            identity_id=identity.id,
            detail={"fields": changed},
        )
        try:
            session.commit()
        except IntegrityError:
            raise ConflictError(f"gallery already has an identity named {update.name!r}") from None
    with state.db.session() as session:
        return identity_detail(session, principal, state.model.sha256, identity_id)


def delete_identity(state: ServiceState, principal: Principal, identity_id: int) -> int:
    """Erase an identity and all its templates; returns how many templates went."""
    with state.db.session(write=True) as session:
        # FOR UPDATE (PostgreSQL): waits for enrolments that hold this identity's key lock to
        # commit, so their templates are in the list below and leave the index too
        identity = get_or_404(session, Identity, identity_id, "identity", for_update=True)
        principal.require_gallery(identity.gallery.name)
        gallery_id = identity.gallery_id
        template_ids = np.asarray(
            session.scalars(select(Template.id).where(Template.identity_id == identity_id)).all(),
            np.int64,
        )
        session.delete(identity)
        audit(
            session,
            "identity.delete",
            principal,
            gallery_id=gallery_id,
            identity_id=identity_id,
            detail={"templates": len(template_ids)},
        )
        state.indexes.commit_remove(session, gallery_id, template_ids)
    state.db.flush_erasures()
    logger.info("erased identity %d with %d templates", identity_id, len(template_ids))
    return len(template_ids)
