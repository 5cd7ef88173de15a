"""GalleryIndexes: commit-then-apply, and the rebuild from SQL when applying fails."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from sqlalchemy import select

from gaitid.service.config import Settings
from gaitid.service.db.engine import Database
from gaitid.service.db.models import Gallery, Identity, IndexChange, Template
from gaitid.service.search.gallery_index import GalleryIndexes, vector_to_bytes
from gaitid.service.search.index import VectorIndex

DIM = 8
SHA = "m" * 64


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.resolved_database_url)
    yield database
    database.dispose()


class _Failing(VectorIndex):
    """An index whose adds fail while ``fail`` is set (a FAISS error after the commit)."""

    fail = False

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:  # type: ignore[override]
        if _Failing.fail:
            raise RuntimeError("index add failed")
        super().add(ids, vectors)


def _new_template(db: Database, indexes: GalleryIndexes, seed: int, *, commit: bool = True) -> int:
    """Insert a template (a gallery and identity too) and commit it through ``indexes``."""
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    vector /= np.linalg.norm(vector)
    with db.session(write=True) as session:
        gallery = session.scalars(select(Gallery).where(Gallery.name == "g")).one_or_none()
        if gallery is None:
            gallery = Gallery(name="g")
            session.add(gallery)
            session.flush()
        identity = Identity(gallery_id=gallery.id, name=f"p{seed}")
        session.add(identity)
        session.flush()
        template = Template(
            identity_id=identity.id,
            model_version="v",
            model_sha256=SHA,
            embedding=vector_to_bytes(vector),
            embedding_dim=DIM,
            content_sha256=f"c{seed}",
            frames_used=1,
            frames_total=1,
        )
        session.add(template)
        session.flush()
        ids = np.asarray([template.id], np.int64)
        indexes.commit_add(session, gallery.id, ids, vector.reshape(1, -1))
        return int(template.id)


def test_a_commit_is_logged_and_applied_under_one_lock(db: Database) -> None:
    indexes = GalleryIndexes(db, SHA, DIM, lambda: VectorIndex(DIM, "flat"))
    template_id = _new_template(db, indexes, 1)
    assert len(indexes) == 1 and indexes.check().consistent
    with db.session() as session:
        logged = session.scalars(select(IndexChange)).all()
    assert [(row.op, row.template_id, row.origin) for row in logged] == [
        ("add", template_id, indexes.origin)
    ]
    assert indexes.catch_up() == 0  # its own row was applied at commit, not replayed


def test_a_failed_apply_rebuilds_from_sql_before_the_error(db: Database) -> None:
    indexes = GalleryIndexes(db, SHA, DIM, lambda: _Failing(DIM, "flat"))
    _new_template(db, indexes, 1)
    _Failing.fail = True
    try:
        with pytest.raises(RuntimeError, match="index add failed"):
            _new_template(db, indexes, 2)
    finally:
        _Failing.fail = False
    # the second template is committed in SQL: the rebuild put it in the index anyway
    assert len(indexes) == 2 and indexes.check().consistent
