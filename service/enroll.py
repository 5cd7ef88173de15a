"""Enrolment: one uploaded walk becomes a template of an identity.

Idempotent per identity and content: the sha256 of the uploaded bytes is checked before any
decoding, and a unique constraint settles concurrent duplicates; either way the existing
template comes back with ``created=False`` (HTTP 200). The template is indexed only after its
commit, under the index lock (see ``service.galleries``).
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gaitid.service.auth import Principal
from gaitid.service.common import audit, elapsed_ms, get_or_create_gallery, get_or_create_identity
from gaitid.service.db.models import Gallery, Identity, Template
from gaitid.service.errors import ConflictError
from gaitid.service.schemas import EnrollResponse, Timings
from gaitid.service.search.gallery_index import vector_to_bytes
from gaitid.service.state import ServiceState
from gaitid.service.walks.embedding import embed_upload
from gaitid.service.walks.uploads import Upload


def _frames_blob(frames: NDArray[np.uint8]) -> bytes:
    """Preprocessed frames as a compressed ``.npz`` (key ``silhouettes``), for re-embedding."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, silhouettes=frames)
    return buffer.getvalue()


@dataclass(frozen=True)
class EnrollFields:
    """The validated form fields of an enrolment (metadata belongs to the template)."""

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


def _audit_enroll(
    session: Session, principal: Principal, identity: Identity, template: Template, *, created: bool
) -> None:
    """One audit row per enroll call, whether it stored a template or returned an existing one."""
    audit(
        session,
        "enroll",
        principal,
        gallery_id=identity.gallery_id,
        identity_id=identity.id,
        template_id=template.id,
        detail={"created": created},
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
        _audit_enroll(session, principal, identity, template, created=False)
        session.commit()
    return _enroll_response(template, identity, fields.gallery, False, None)


def _require_gallery(state: ServiceState, name: str) -> None:
    """404 before the upload is decoded when galleries must be created explicitly."""
    with state.db.session() as session:
        get_or_create_gallery(session, name, create=False)


#: Attempts at storing a template when a concurrent erasure removes its identity midway.
_STORE_ATTEMPTS = 3


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
    """Insert the template (creating gallery and identity as needed) and index it.

    On PostgreSQL an identity found a moment ago can be erased by a concurrent delete before
    the template row references it; the foreign key then fails and the whole step is retried,
    which creates the identity afresh.
    """
    blob = _frames_blob(frames) if state.settings.store_silhouettes else None
    for _ in range(_STORE_ATTEMPTS):
        stored = _store_once(
            state, principal, fields, content_sha, vector, frames, frames_total, blob, timings
        )
        if stored is not None:
            return stored
    raise ConflictError(
        f"identity {fields.identity!r} was erased repeatedly while enrolling; retry the request"
    )


def _store_once(
    state: ServiceState,
    principal: Principal,
    fields: EnrollFields,
    content_sha: str,
    vector: NDArray[np.float32],
    frames: NDArray[np.uint8],
    frames_total: int,
    blob: bytes | None,
    timings: Timings,
) -> EnrollResponse | None:
    model = state.model
    with state.db.session(write=True) as session:
        gallery = get_or_create_gallery(
            session, fields.gallery, create=state.settings.implicit_galleries
        )
        identity = get_or_create_identity(session, gallery, fields.identity)
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
            silhouettes=blob,
        )
        try:
            with session.begin_nested():
                session.add(template)
        except IntegrityError:
            existing = session.scalars(
                select(Template).where(
                    Template.identity_id == identity.id,
                    Template.content_sha256 == content_sha,
                    Template.model_sha256 == model.sha256,
                )
            ).one_or_none()
            if existing is None:  # the identity was erased concurrently: start again
                session.rollback()
                return None
            # the same content was enrolled concurrently for this identity: return that one
            _audit_enroll(session, principal, identity, existing, created=False)
            session.commit()
            return _enroll_response(existing, identity, gallery.name, False, None)
        _audit_enroll(session, principal, identity, template, created=True)
        gallery_id, template_id = gallery.id, template.id
        state.indexes.commit_add(
            session, gallery_id, np.asarray([template_id], np.int64), vector.reshape(1, -1)
        )
        return _enroll_response(template, identity, gallery.name, True, timings)


async def enroll(
    state: ServiceState, principal: Principal, upload: Upload, fields: EnrollFields
) -> EnrollResponse:
    """Enrol one walk; ``created`` tells a new template from an existing one."""
    start = time.perf_counter()
    principal.require_gallery(fields.gallery)
    if not state.settings.implicit_galleries:
        await anyio.to_thread.run_sync(_require_gallery, state, fields.gallery)
    content_sha = upload.sha256
    existing = await anyio.to_thread.run_sync(
        _existing_template, state, principal, fields, content_sha
    )
    if existing is not None:
        state.metrics.enrollments.labels("existing").inc()
        return existing
    walk = await embed_upload(upload, state)
    decoded, embedded = walk.decoded, walk.embedded
    timings = walk.timings(total_ms=0.0)  # completed once the template is stored
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
        response.timings.total_ms = elapsed_ms(start)
    if response.created:
        response.input = walk.input_report()
    state.metrics.enrollments.labels("created" if response.created else "existing").inc()
    return response
