"""Enrolment, identification, verification and erasure: the logic behind the routes.

Rules held here (the routes only translate HTTP):

- SQL is the source of truth. A change is written and flushed in one transaction, then
  committed and applied to the in-memory index under one lock (``GalleryIndexes``), so the
  index never holds a template the database lacks for longer than a search can notice, and
  never misses one after the request returns.
- Enrolment is idempotent per identity and content: the sha256 of the uploaded bytes is
  checked before any decoding, and a unique constraint settles concurrent duplicates; either
  way the existing template comes back with ``created=False`` (HTTP 200).
- Only templates of the loaded model (by model file sha256) are compared; others are stale.
- Threshold precedence: the request's, else the gallery's default, else the model's calibrated
  default (ONNX metadata ``default_threshold``), else ``Settings.fallback_threshold``.
- Delete is erasure: the rows (embedding, optional frames) go in one transaction and the
  vectors leave the index under the same lock; audit rows keep ids only.

Blocking work (SQL, FAISS) runs in worker threads; these functions are called from the
event loop.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import numpy as np
from numpy.typing import NDArray
from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.auth import Principal
from service.db.models import AuditLog, Base, Gallery, Identity, Template
from service.errors import ConflictError, InvalidRequestError, NotFoundError
from service.gallery_index import vector_from_bytes, vector_to_bytes
from service.schemas import (
    EnrollResponse,
    GalleryInfo,
    GalleryUpdate,
    IdentifyResponse,
    IdentityDetail,
    IdentityPage,
    IdentitySummary,
    IdentityUpdate,
    Match,
    TemplateInfo,
    ThresholdSource,
    Timings,
    VerifyResponse,
)
from service.state import ServiceState
from service.uploads import Upload, decode

logger = logging.getLogger(__name__)

RowT = TypeVar("RowT", bound=Base)

#: How many index hits are fetched per wanted identity before grouping by identity.
_HITS_PER_IDENTITY = 4


# ---------------------------------------------------------------------------- helpers
def get_or_404(session: Session, model: type[RowT], row_id: int, what: str) -> RowT:
    """The row with primary key ``row_id`` or :class:`NotFoundError` naming it."""
    row = session.get(model, row_id)
    if row is None:
        raise NotFoundError(f"{what} {row_id} not found")
    return row


def gallery_by_name(session: Session, name: str) -> Gallery:
    row = session.scalars(select(Gallery).where(Gallery.name == name)).one_or_none()
    if row is None:
        raise NotFoundError(f"gallery {name!r} not found (it is created by the first enrolment)")
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


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _frames_blob(frames: NDArray[np.uint8]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, silhouettes=frames)
    return buffer.getvalue()


def _audit(session: Session, action: str, principal: Principal | None, **fields: Any) -> None:
    detail = fields.pop("detail", None)
    session.add(
        AuditLog(
            action=action,
            api_key_id=principal.key_id if principal else None,
            detail=detail,
            **fields,
        )
    )


def _get_or_create_gallery(session: Session, name: str) -> Gallery:
    found = session.scalars(select(Gallery).where(Gallery.name == name)).one_or_none()
    if found is not None:
        return found
    try:
        with session.begin_nested():
            gallery = Gallery(name=name)
            session.add(gallery)
        return gallery
    except IntegrityError:  # created concurrently (PostgreSQL); the row is committed now
        return session.scalars(select(Gallery).where(Gallery.name == name)).one()


def _get_or_create_identity(session: Session, gallery: Gallery, name: str) -> Identity:
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


# ---------------------------------------------------------------------------- enrol
@dataclass(frozen=True)
class EnrollFields:
    identity: str
    gallery: str
    view: str | None
    condition: str | None
    metadata: dict[str, Any] | None


def _enroll_response(
    template: Template, identity: Identity, gallery: str, created: bool, timings: Timings | None
) -> EnrollResponse:
    return EnrollResponse(
        identity_id=identity.id,
        identity=identity.name,
        gallery=gallery,
        template_id=template.id,
        created=created,
        frames_used=template.frames_used,
        frames_total=template.frames_total,
        frames_dropped=template.frames_total - template.frames_used,
        model_version=template.model_version,
        timings=timings,
    )


def _existing_template(
    state: ServiceState, principal: Principal, fields: EnrollFields, content_sha: str
) -> EnrollResponse | None:
    """The template already enrolled from these bytes for this identity (current model)."""
    with state.db.session() as session:
        row = session.execute(
            select(Template, Identity)
            .join(Identity, Template.identity_id == Identity.id)
            .join(Gallery, Identity.gallery_id == Gallery.id)
            .where(
                Gallery.name == fields.gallery,
                Identity.name == fields.identity,
                Template.content_sha256 == content_sha,
                Template.model_sha256 == state.model.sha256,
            )
        ).one_or_none()
    if row is None:
        return None
    template, identity = row
    with state.db.session(write=True) as session:
        _audit(
            session,
            "enroll",
            principal,
            gallery_id=identity.gallery_id,
            identity_id=identity.id,
            template_id=template.id,
            detail={"created": False},
        )
        session.commit()
    return _enroll_response(template, identity, fields.gallery, False, None)


def _store_template(
    state: ServiceState,
    principal: Principal,
    fields: EnrollFields,
    content_sha: str,
    vector: NDArray[np.float32],
    frames: NDArray[np.uint8],
    frames_total: int,
    timings: Timings,
) -> EnrollResponse:
    model = state.model
    with state.db.session(write=True) as session:
        gallery = _get_or_create_gallery(session, fields.gallery)
        identity = _get_or_create_identity(session, gallery, fields.identity)
        template = Template(
            identity_id=identity.id,
            model_version=model.version,
            model_sha256=model.sha256,
            embedding=vector_to_bytes(vector),
            embedding_dim=int(vector.shape[0]),
            content_sha256=content_sha,
            view=fields.view,
            condition=fields.condition,
            meta=fields.metadata,
            frames_used=int(frames.shape[0]),
            frames_total=frames_total,
            silhouettes=_frames_blob(frames) if state.settings.store_silhouettes else None,
        )
        try:
            with session.begin_nested():
                session.add(template)
        except IntegrityError:
            # the same content was enrolled concurrently for this identity: return that one
            existing = session.scalars(
                select(Template).where(
                    Template.identity_id == identity.id,
                    Template.content_sha256 == content_sha,
                    Template.model_sha256 == model.sha256,
                )
            ).one()
            _audit(
                session,
                "enroll",
                principal,
                gallery_id=gallery.id,
                identity_id=identity.id,
                template_id=existing.id,
                detail={"created": False},
            )
            session.commit()
            return _enroll_response(existing, identity, gallery.name, False, None)
        _audit(
            session,
            "enroll",
            principal,
            gallery_id=gallery.id,
            identity_id=identity.id,
            template_id=template.id,
            detail={"created": True},
        )
        gallery_id, template_id = gallery.id, template.id
        state.indexes.commit_and_apply(
            session,
            lambda: state.indexes.add(
                gallery_id, np.asarray([template_id], np.int64), vector.reshape(1, -1)
            ),
        )
        return _enroll_response(template, identity, gallery.name, True, timings)


async def enroll(
    state: ServiceState, principal: Principal, upload: Upload, fields: EnrollFields
) -> EnrollResponse:
    """Enrol one walk; ``created`` tells a new template from an existing one."""
    start = time.perf_counter()
    content_sha = upload.sha256
    existing = await anyio.to_thread.run_sync(
        _existing_template, state, principal, fields, content_sha
    )
    if existing is not None:
        state.metrics.enrollments.labels("existing").inc()
        return existing
    decoded = await decode(upload, state.settings)
    state.metrics.decode.observe(decoded.decode_ms / 1000.0)
    embedded = await state.batcher.embed(decoded.sequence.frames)
    state.metrics.observe_embedding(embedded.inference_ms, embedded.queue_ms, embedded.batch_size)
    timings = Timings(
        decode_ms=decoded.decode_ms,
        queue_ms=embedded.queue_ms,
        inference_ms=embedded.inference_ms,
        batch_size=embedded.batch_size,
        total_ms=0.0,
    )
    response = await anyio.to_thread.run_sync(
        lambda: _store_template(
            state,
            principal,
            fields,
            content_sha,
            embedded.vector,
            decoded.sequence.frames,
            decoded.sequence.total,
            timings,
        )
    )
    if response.timings is not None:
        response.timings.total_ms = _ms(start)
    state.metrics.enrollments.labels("created" if response.created else "existing").inc()
    return response


# ---------------------------------------------------------------------------- identify
@dataclass(frozen=True)
class _GalleryRef:
    id: int
    name: str
    default_threshold: float | None


def _gallery_ref(state: ServiceState, name: str) -> _GalleryRef:
    with state.db.session() as session:
        gallery = gallery_by_name(session, name)
        return _GalleryRef(gallery.id, gallery.name, gallery.default_threshold)


def _rank(
    state: ServiceState, gallery: _GalleryRef, vector: NDArray[np.float32], top_k: int
) -> list[Match]:
    """Best template per identity, best first, at most ``top_k`` identities."""
    size = state.indexes.gallery_size(gallery.id)
    k = min(size, top_k * _HITS_PER_IDENTITY)
    while True:
        scores, ids = state.indexes.search(gallery.id, vector, max(k, 1))
        if not len(ids):
            return []
        with state.db.session() as session:
            rows = session.execute(
                select(Template.id, Identity.id, Identity.name)
                .join(Identity, Template.identity_id == Identity.id)
                .where(Template.id.in_(ids.tolist()))
            ).all()
        owner = {template_id: (identity_id, name) for template_id, identity_id, name in rows}
        best: dict[int, Match] = {}
        for score, template_id in zip(scores.tolist(), ids.tolist(), strict=True):
            if template_id not in owner:  # deleted a moment ago; SQL wins
                continue
            identity_id, name = owner[template_id]
            if identity_id not in best:  # scores arrive best first
                best[identity_id] = Match(
                    identity=name, identity_id=identity_id, template_id=template_id, score=score
                )
        if len(best) >= top_k or k >= size:
            return sorted(best.values(), key=lambda m: m.score, reverse=True)[:top_k]
        k = min(size, k * _HITS_PER_IDENTITY)


def _search_and_audit(
    state: ServiceState,
    principal: Principal,
    gallery: _GalleryRef,
    vector: NDArray[np.float32],
    top_k: int,
    threshold: float,
) -> list[Match]:
    matches = _rank(state, gallery, vector, top_k)
    decision = "match" if matches and matches[0].score >= threshold else "unknown"
    with state.db.session(write=True) as session:
        _audit(
            session,
            "identify",
            principal,
            gallery_id=gallery.id,
            identity_id=matches[0].identity_id if decision == "match" else None,
            detail={"decision": decision, "returned": len(matches)},
        )
        session.commit()
    return matches


async def identify(
    state: ServiceState,
    principal: Principal,
    upload: Upload,
    gallery_name: str,
    top_k: int,
    threshold: float | None,
) -> IdentifyResponse:
    """Rank the gallery's identities against one walk and decide match/unknown."""
    start = time.perf_counter()
    if top_k > state.settings.max_top_k:
        raise InvalidRequestError(f"top_k={top_k} exceeds the limit {state.settings.max_top_k}")
    gallery = await anyio.to_thread.run_sync(_gallery_ref, state, gallery_name)
    used, source = resolve_threshold(
        threshold,
        gallery.default_threshold,
        state.model.default_threshold,
        state.settings.fallback_threshold,
    )
    decoded = await decode(upload, state.settings)
    state.metrics.decode.observe(decoded.decode_ms / 1000.0)
    embedded = await state.batcher.embed(decoded.sequence.frames)
    state.metrics.observe_embedding(embedded.inference_ms, embedded.queue_ms, embedded.batch_size)
    search_start = time.perf_counter()
    matches = await anyio.to_thread.run_sync(
        _search_and_audit, state, principal, gallery, embedded.vector, top_k, used
    )
    decision = "match" if matches and matches[0].score >= used else "unknown"
    state.metrics.decisions.labels(decision).inc()
    return IdentifyResponse(
        gallery=gallery.name,
        matches=matches,
        decision=decision,
        threshold=used,
        threshold_source=source,
        model_version=state.model.version,
        frames_used=int(decoded.sequence.frames.shape[0]),
        timings=Timings(
            decode_ms=decoded.decode_ms,
            queue_ms=embedded.queue_ms,
            inference_ms=embedded.inference_ms,
            batch_size=embedded.batch_size,
            search_ms=_ms(search_start),
            total_ms=_ms(start),
        ),
    )


# ---------------------------------------------------------------------------- verify
@dataclass(frozen=True)
class _VerifyTarget:
    identity_id: int
    name: str
    gallery: _GalleryRef
    template_ids: NDArray[np.int64]
    vectors: NDArray[np.float32]


def _verify_target(
    state: ServiceState, identity_id: int | None, identity_name: str | None, gallery_name: str
) -> _VerifyTarget:
    with state.db.session() as session:
        if identity_id is not None:
            identity = get_or_404(session, Identity, identity_id, "identity")
        else:
            gallery = gallery_by_name(session, gallery_name)
            identity = session.scalars(
                select(Identity).where(
                    Identity.gallery_id == gallery.id, Identity.name == identity_name
                )
            ).one_or_none()
            if identity is None:
                raise NotFoundError(f"identity {identity_name!r} not found in gallery {gallery_name!r}")
        gallery_row = identity.gallery
        rows = session.execute(
            select(Template.id, Template.embedding)
            .where(
                Template.identity_id == identity.id, Template.model_sha256 == state.model.sha256
            )
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
            gallery=_GalleryRef(gallery_row.id, gallery_row.name, gallery_row.default_threshold),
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
    if (identity_id is None) == (identity_name is None):
        raise InvalidRequestError("give exactly one of identity_id or identity (a name)")
    target = await anyio.to_thread.run_sync(
        _verify_target, state, identity_id, identity_name, gallery_name
    )
    used, source = resolve_threshold(
        threshold,
        target.gallery.default_threshold,
        state.model.default_threshold,
        state.settings.fallback_threshold,
    )
    decoded = await decode(upload, state.settings)
    state.metrics.decode.observe(decoded.decode_ms / 1000.0)
    embedded = await state.batcher.embed(decoded.sequence.frames)
    state.metrics.observe_embedding(embedded.inference_ms, embedded.queue_ms, embedded.batch_size)
    scores = target.vectors @ embedded.vector
    best = int(np.argmax(scores))
    score = float(scores[best])
    match = score >= used

    def _record() -> None:
        with state.db.session(write=True) as session:
            _audit(
                session,
                "verify",
                principal,
                gallery_id=target.gallery.id,
                identity_id=target.identity_id,
                detail={"match": match},
            )
            session.commit()

    await anyio.to_thread.run_sync(_record)
    return VerifyResponse(
        identity_id=target.identity_id,
        identity=target.name,
        gallery=target.gallery.name,
        score=score,
        match=match,
        threshold=used,
        threshold_source=source,
        template_id=int(target.template_ids[best]),
        model_version=state.model.version,
        frames_used=int(decoded.sequence.frames.shape[0]),
        timings=Timings(
            decode_ms=decoded.decode_ms,
            queue_ms=embedded.queue_ms,
            inference_ms=embedded.inference_ms,
            batch_size=embedded.batch_size,
            total_ms=_ms(start),
        ),
    )


# ---------------------------------------------------------------------------- identities
def encode_cursor(after_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a cursor continues after; :class:`InvalidRequestError` for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidRequestError(f"cursor {cursor[:40]!r} is not one this API returned") from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequestError(f"cursor {cursor[:40]!r} is not one this API returned")
    return value


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
    session: Session, model_sha: str, gallery: str | None, limit: int, cursor: str | None
) -> IdentityPage:
    """One page of identities in id order; ``next_cursor`` continues after the last."""
    stmt = select(Identity, Gallery.name).join(Gallery, Identity.gallery_id == Gallery.id)
    if gallery is not None:
        stmt = stmt.where(Identity.gallery_id == gallery_by_name(session, gallery).id)
    if cursor is not None:
        stmt = stmt.where(Identity.id > decode_cursor(cursor))
    rows = session.execute(stmt.order_by(Identity.id).limit(limit + 1)).all()
    page = rows[:limit]
    counts = _template_counts(session, [r[0].id for r in page], model_sha)
    items = [
        IdentitySummary(**_summary(identity, name, counts.get(identity.id, (0, 0))))
        for identity, name in page
    ]
    next_cursor = encode_cursor(page[-1][0].id) if len(rows) > limit else None
    return IdentityPage(items=items, next_cursor=next_cursor)


def identity_detail(session: Session, model_sha: str, identity_id: int) -> IdentityDetail:
    identity = get_or_404(session, Identity, identity_id, "identity")
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
        _audit(
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
        return identity_detail(session, state.model.sha256, identity_id)


def delete_identity(state: ServiceState, principal: Principal, identity_id: int) -> int:
    """Erase an identity and all its templates; returns how many templates went."""
    with state.db.session(write=True) as session:
        identity = get_or_404(session, Identity, identity_id, "identity")
        gallery_id = identity.gallery_id
        template_ids = np.asarray(
            session.scalars(select(Template.id).where(Template.identity_id == identity_id)).all(),
            np.int64,
        )
        session.delete(identity)
        _audit(
            session,
            "identity.delete",
            principal,
            gallery_id=gallery_id,
            identity_id=identity_id,
            detail={"templates": len(template_ids)},
        )
        state.indexes.commit_and_apply(
            session, lambda: state.indexes.remove(gallery_id, template_ids)
        )
    logger.info("erased identity %d with %d templates", identity_id, len(template_ids))
    return len(template_ids)


def delete_template(state: ServiceState, principal: Principal, template_id: int) -> None:
    """Erase one template (the identity stays, possibly with no templates)."""
    with state.db.session(write=True) as session:
        template = get_or_404(session, Template, template_id, "template")
        identity_id = template.identity_id
        gallery_id = template.identity.gallery_id
        session.delete(template)
        _audit(
            session,
            "template.delete",
            principal,
            gallery_id=gallery_id,
            identity_id=identity_id,
            template_id=template_id,
        )
        state.indexes.commit_and_apply(
            session,
            lambda: state.indexes.remove(gallery_id, np.asarray([template_id], np.int64)),
        )


# ---------------------------------------------------------------------------- galleries
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
        identities=int(identities or 0),
        templates=int(templates or 0),
    )


def list_galleries(session: Session, model_sha: str) -> list[GalleryInfo]:
    galleries = session.scalars(select(Gallery).order_by(Gallery.name)).all()
    return [_gallery_info(session, g, model_sha) for g in galleries]


def update_gallery(
    state: ServiceState, principal: Principal, name: str, update: GalleryUpdate
) -> GalleryInfo:
    with state.db.session(write=True) as session:
        gallery = gallery_by_name(session, name)
        gallery.default_threshold = update.default_threshold
        _audit(
            session,
            "gallery.update",
            principal,
            gallery_id=gallery.id,
            detail={"default_threshold": update.default_threshold},
        )
        session.commit()
        return _gallery_info(session, gallery, state.model.sha256)
