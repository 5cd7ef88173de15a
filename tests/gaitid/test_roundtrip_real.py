"""Acceptance: the preprocessing round trip on real CASIA-B walks reaches mean IoU >= 0.93.

Runs the very code of ``bench/preprocess_roundtrip.py`` (the figure in BENCHMARKS.md) on a
few walks; skipped when ``../shared/data/casia-b-train`` is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.utils.bench import load_bench

pytestmark = pytest.mark.real_data


def test_roundtrip_iou_on_real_walks(casia_b_train_dir: Path) -> None:
    result = load_bench("preprocess_roundtrip").run(casia_b_train_dir, walks=8, seed=0)
    assert result.frames > 100
    assert result.mean_iou >= 0.93, result
