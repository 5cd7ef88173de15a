"""Regression (issue 26): two real walks crossing in one clip, each person identified, with the
shipped model and the code of ``bench/people_clips.py``. Two pairs of subjects, NM / BG / CL.
Skipped when ``../shared/data/casia-b-train`` is absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.utils.bench import load_bench

pytestmark = pytest.mark.real_data

SHIPPED = REPO_ROOT / "models" / "gaitid-lmgcs.onnx"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model is absent")
def test_two_people_crossing_are_each_identified(casia_b_train_dir: Path) -> None:
    bench = load_bench("people_clips")
    result = bench.identify_pairs(SHIPPED, casia_b_train_dir, ["067", "068"], seed=2, log=False)
    rows = result["rows"]
    assert len(rows) == 6 and not [r["error"] for r in rows if "error" in r]
    for row in rows:
        assert row["found"] == 2, row
        assert [t["truth"] for t in row["tracks"]] == row["people"]  # in order of appearance
        assert [t["top"] for t in row["tracks"]] == row["people"], row
