"""Acceptance: the preprocessing round trip on real CASIA-B walks reaches mean IoU >= 0.93.

Runs the very code of ``bench/preprocess_roundtrip.py`` (the figure in BENCHMARKS.md) on a
few walks; skipped when ``../shared/data/casia-b-train`` is absent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.real_data


def _bench_module() -> ModuleType:
    path = REPO_ROOT / "bench" / "preprocess_roundtrip.py"
    spec = importlib.util.spec_from_file_location("preprocess_roundtrip", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_roundtrip_iou_on_real_walks(casia_b_train_dir: Path) -> None:
    result = _bench_module().run(casia_b_train_dir, walks=8, seed=0)
    assert result.frames > 100
    assert result.mean_iou >= 0.93, result
