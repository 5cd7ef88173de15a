"""Regression: real walks through composited camera clips lose little rank-1 against their clean
silhouettes (issue 24), with the shipped model and the code of ``bench/clip_identity.py``.

A small fixed set (four held-out subjects, one probe view, NM / BG / CL): the bound is loose
enough for any CPU and tight enough that a segmentation change that spoils masks fails it.
Skipped when ``../shared/data/casia-b-train`` is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.utils.bench import load_bench

pytestmark = pytest.mark.real_data

SHIPPED = REPO_ROOT / "models" / "gaitid-lmgcs.onnx"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped model is absent")
def test_clip_route_loses_little_rank1(casia_b_train_dir: Path) -> None:
    bench = load_bench("clip_identity")
    result = bench.measure(
        SHIPPED, casia_b_train_dir, ["063", "064", "065", "066"], ["108"], seed=1, log=False
    )
    assert len(result.probes) == 12 and not [p.error for p in result.probes if p.error]
    loss = result.mean("clean", "rank1") - result.mean("clip", "rank1")
    assert loss <= 10.0, (result.table("clean"), result.table("clip"))
    cosines = [float(p.clean @ p.clip) for p in result.probes]
    assert float(np.mean(cosines)) >= 0.6, cosines
    # every frame of the person in full view reached the model
    assert sum(sum(p.dropped_visible.values()) for p in result.probes) == 0
