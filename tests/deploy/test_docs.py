"""The docs stay a reference: every setting documented with its default, a README that starts
with the two-command quick start, and a benchmark page whose first screen says what is current.
"""

from __future__ import annotations

import re
from pathlib import Path

from gaitid.service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
#: The configuration table lives beside the service it configures.
DOC = ROOT / "service" / "README.md"


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


def _sections(text: str) -> dict[str, str]:
    """``## title -> body`` of a markdown page."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_readme_quick_start_is_make_serve_then_make_test() -> None:
    quick = _sections((ROOT / "README.md").read_text())["Quick start"]
    assert re.search(r"^make serve\b.*\n^make test\b", quick, flags=re.M), quick


def test_benchmarks_first_screen_names_each_current_figure() -> None:
    """Issue 28: one section per question, each with a machine, a date, a command and a
    table, listed on the first screen; earlier runs in bench/HISTORY.md."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    first_screen = "\n".join(text.splitlines()[:25])
    sections = _sections(text)
    assert len(sections) >= 6
    for title, body in sections.items():
        anchor = re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
        assert f"](#{anchor})" in first_screen, title
        assert "bench/" in body, f"{title}: no command"
        assert "|---" in body, f"{title}: no table"
        assert re.search(r"20\d\d-\d\d-\d\d|not recorded", body), f"{title}: no date"
    assert (ROOT / "bench" / "HISTORY.md").is_file()
