"""Shared pytest fixtures: locations of optional real data, deterministic RNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Real CASIA-B subjects 001-074 live beside the checkout; tests that use them skip without.
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "casia-b-train"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def casia_b_train_dir() -> Path:
    """The real CASIA-B training subjects, or a skip when ``../shared`` is absent."""
    if not (SHARED_DATA / "001.npz").is_file():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA
