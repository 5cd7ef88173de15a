"""``bench/embedding_head_fits.py``: head refits scored as the service decides."""

from __future__ import annotations

import numpy as np

from gaitid.distance import l2_normalize
from gaitid.training.evaluation.protocols import CASIA_B_GALLERY
from tests.training.test_open_set import _features
from tests.utils.bench import load_bench


def test_the_pair_term_shrinks_what_separates_two_readings_of_a_walk() -> None:
    bench = load_bench("embedding_head_fits")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 6)
    x = rng.normal(size=(10, 4))[labels] + 0.1 * rng.normal(size=(60, 4))
    read = x.copy()
    read[:, 0] += rng.normal(size=60)  # the second reading moves along direction 0 only
    projected = np.r_[x, read]
    pairs = np.c_[np.arange(60), 60 + np.arange(60)]
    both = np.r_[labels, labels]
    plain = bench.whitening(projected, both, ridge=0.01, out_dim=4)
    paired = bench.whitening(projected, both, ridge=0.01, pairs=pairs, pair_weight=10.0, out_dim=4)

    def spread(white: np.ndarray) -> float:  # the readings' distance against the people's
        d = (x - read) @ white
        return float(np.linalg.norm(d, axis=1).mean() / np.linalg.norm(x @ white, axis=1).mean())

    assert spread(paired) < 0.5 * spread(plain)


def test_identical_readings_lose_nothing_through_the_route() -> None:
    bench = load_bench("embedding_head_fits")
    every = _features(subjects=6, noise=0.4)
    clean = bench.Walks(every.subjects, every.conditions, every.views, every.embeddings)
    probes = np.flatnonzero(~np.isin(every.conditions, CASIA_B_GALLERY))
    clip = clean.rows(probes)  # the route read every probe walk exactly as it was

    def embed(walks: object) -> np.ndarray:
        return l2_normalize(walks.flat)  # type: ignore[attr-defined]

    result = bench.score(embed, clean, clip)
    assert result["rank1_mean_clean"] == result["rank1_mean_clip"]
    assert result["accepted_clean"] == result["accepted_clip"]
    assert abs(result["cosine"] - 1.0) < 1e-5 and 0 <= result["eer"] < 0.5
