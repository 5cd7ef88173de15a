"""Templates (``/templates``): erasing one enrolled walk, the identity staying."""

from __future__ import annotations

import logging

import numpy as np

from gaitid.service.auth import Principal
from gaitid.service.common import audit, get_or_404
from gaitid.service.db.models import Template
from gaitid.service.state import ServiceState

logger = logging.getLogger(__name__)


def delete_template(state: ServiceState, principal: Principal, template_id: int) -> None:
    """Erase one template (the identity stays, possibly with no templates)."""
    with state.db.session(write=True) as session:
        template = get_or_404(session, Template, template_id, "template")
        principal.require_gallery(template.identity.gallery.name)
        identity_id = template.identity_id
        gallery_id = template.identity.gallery_id
        session.delete(template)
        audit(
            session,
            "template.delete",
            principal,
            gallery_id=gallery_id,
            identity_id=identity_id,
            template_id=template_id,
        )
        state.indexes.commit_remove(session, gallery_id, np.asarray([template_id], np.int64))
    state.db.flush_erasures()
