"""README.md's deployment section documents every setting of the service with its real default."""

from __future__ import annotations

import re
from pathlib import Path

from gaitid.service.config import Settings

DOC = Path(__file__).resolve().parents[2] / "README.md"


def _rows() -> dict[str, str]:
    """``GAITID_NAME -> default cell`` of the configuration table."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `(GAITID_[A-Z0-9_]+)` \| (.+?) \| .+ \|$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_every_setting_is_documented_with_its_default() -> None:
    rows = _rows()
    for name, field in Settings.model_fields.items():
        variable = f"GAITID_{name.upper()}"
        assert variable in rows, f"{variable} is missing from {DOC.name}"
        default = field.default
        if field.default_factory is None and default is not None:
            shown = str(default).lower() if isinstance(default, bool) else str(default)
            assert rows[variable] == f"`{shown}`", (variable, rows[variable], shown)


def test_no_documented_setting_is_unknown() -> None:
    known = {f"GAITID_{name.upper()}" for name in Settings.model_fields}
    compose_only = {"GAITID_MODELS_DIR", "GAITID_MODEL_FILE", "GAITID_PUBLISH_PORT"}
    assert set(_rows()) - known - compose_only == set()
