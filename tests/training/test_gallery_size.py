"""Rank-1 at other gallery sizes: the exact figures against brute force over every gallery,
the protocol's own rank-1 at the full held-out gallery, and the beta-binomial extrapolation
against simulation."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gaitid.training.evaluation.gallery_size import (
    beta_binomial_fit,
    beta_binomial_rank1,
    estimate_gallery_size,
    estimates_table,
    impostor_counts,
    padded_rank1,
    subsampled_rank1,
)
from gaitid.training.evaluation.protocols import (
    CASIA_B_VIEWS,
    CrossViewSpec,
    FeatureSet,
    ProtocolError,
    evaluate_cross_view,
    run_protocol,
)
from gaitid.training.evaluation.report import to_json, to_markdown
from tests.utils.bench import load_bench

SPEC = CrossViewSpec(
    "tiny", ("000", "090", "180"), ("nm-01", "nm-02"), {"NM": ("nm-05",), "CL": ("cl-01",)}
)


def _walks(
    subjects: list[str],
    conditions: tuple[str, ...],
    noise: float,
    seed: int,
    all_views: tuple[str, ...] = SPEC.views,
) -> FeatureSet:
    """Each subject a random direction in 16-d, each walk that plus noise (normalised): close
    enough that some probes are beaten by some impostors."""
    rng = np.random.default_rng(seed)
    names, conds, views, vectors = [], [], [], []
    for subject in subjects:
        centre = np.random.default_rng(int(subject)).normal(size=16)
        for condition in conditions:
            for view in all_views:
                names.append(subject)
                conds.append(condition)
                views.append(view)
                vectors.append(centre + noise * rng.normal(size=16))
    emb = np.asarray(vectors, dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return FeatureSet(np.array(names), np.array(conds), np.array(views), emb)


HELD_OUT = [f"{s:03d}" for s in range(1, 7)]
DISTRACTORS = [f"{s:03d}" for s in range(20, 28)]


@pytest.fixture(scope="module")
def held_out() -> FeatureSet:
    return _walks(HELD_OUT, ("nm-01", "nm-02", "nm-05", "cl-01"), noise=1.1, seed=1)


@pytest.fixture(scope="module")
def distractors() -> FeatureSet:
    return _walks(DISTRACTORS, ("nm-01", "nm-02", "nm-05"), noise=1.1, seed=2)


def _brute_force_rank1(features: FeatureSet, gallery_subjects: set[str], probes: str) -> float:
    """The protocol's rank-1 with the gallery cut to ``gallery_subjects``, probes of those
    subjects only (a gallery holds the probe's own subject)."""
    keep = np.isin(features.subjects, sorted(gallery_subjects))
    result = evaluate_cross_view(features.subset(keep), SPEC, "embedding")
    return result.mean[probes]


def test_the_full_held_out_gallery_is_the_protocols_rank1(held_out: FeatureSet) -> None:
    counts = impostor_counts(held_out, ("cl-01",), spec=SPEC)
    protocol = evaluate_cross_view(held_out, SPEC, "embedding").mean["CL"]
    assert subsampled_rank1(counts, len(HELD_OUT), len(SPEC.views)) == pytest.approx(protocol)
    assert 0 < protocol < 100  # the fixture is hard enough to say something


def test_a_smaller_gallery_is_the_mean_over_every_such_gallery(held_out: FeatureSet) -> None:
    """Per probe, the exact hypergeometric mean equals averaging over every 3-subject gallery
    holding it. Averaged over probes that is the mean of per-gallery rank-1s weighted by
    probes, which the brute force below reproduces probe by probe."""
    counts = impostor_counts(held_out, ("nm-05",), spec=SPEC)
    exact = subsampled_rank1(counts, 3, len(SPEC.views))
    # brute force: every probe, every pair of impostors, rank-1 in that gallery
    probes = np.flatnonzero(held_out.conditions == "nm-05")
    gallery = np.flatnonzero(np.isin(held_out.conditions, SPEC.gallery))
    table = np.full((3, 3), np.nan)
    for i, pv in enumerate(SPEC.views):
        for j, gv in enumerate(SPEC.views):
            hits = []
            for p in probes[held_out.views[probes] == pv]:
                own = held_out.subjects[p]
                others = [s for s in HELD_OUT if s != own]
                for pair in itertools.combinations(others, 2):
                    cols = gallery[
                        (held_out.views[gallery] == gv)
                        & np.isin(held_out.subjects[gallery], [own, *pair])
                    ]
                    dist = held_out.distance(np.array([p]), cols, "embedding")[0]
                    hits.append(held_out.subjects[cols[np.argmin(dist)]] == own)
            table[i, j] = 100.0 * np.mean(hits)
    np.fill_diagonal(table, np.nan)
    assert exact == pytest.approx(np.nanmean(np.nanmean(table, axis=1)))
    assert exact >= subsampled_rank1(counts, len(HELD_OUT), 3)  # fewer impostors, more hits


def test_padding_is_the_mean_over_every_draw_of_distractors(
    held_out: FeatureSet, distractors: FeatureSet
) -> None:
    counts = impostor_counts(held_out, ("nm-05",), spec=SPEC, distractors=distractors)
    assert set(counts.distractors.tolist()) == {len(DISTRACTORS)}
    padded = padded_rank1(counts, 2, len(SPEC.views))
    draws = [
        _brute_force_rank1(
            FeatureSet(
                np.concatenate([held_out.subjects, distractors.subjects]),
                np.concatenate([held_out.conditions, distractors.conditions]),
                np.concatenate([held_out.views, distractors.views]),
                np.concatenate([held_out.embeddings, distractors.embeddings]),
            ).subset(
                ~np.isin(np.concatenate([held_out.subjects, distractors.subjects]), DISTRACTORS)
                | (
                    np.isin(np.concatenate([held_out.subjects, distractors.subjects]), pair)
                    & np.isin(
                        np.concatenate([held_out.conditions, distractors.conditions]), SPEC.gallery
                    )
                )
            ),
            {*HELD_OUT, *pair},
            "NM",
        )
        for pair in itertools.combinations(DISTRACTORS, 2)
    ]
    # probes are the held-out subjects' only, so every draw has the same probes per cell
    assert padded == pytest.approx(np.mean(draws))
    assert padded <= padded_rank1(counts, 0, len(SPEC.views))


def test_beta_binomial_recovers_a_simulated_population() -> None:
    rng = np.random.default_rng(0)
    share = rng.beta(0.3, 6.0, size=4000)
    beaten = rng.binomial(11, share)
    alpha, beta = beta_binomial_fit(beaten, np.full(beaten.size, 11))
    for impostors in (11, 49):
        simulated = float(np.mean((1.0 - share) ** impostors))
        assert beta_binomial_rank1(alpha, beta, impostors) == pytest.approx(simulated, abs=0.015)
    assert beta_binomial_rank1(alpha, beta, 0) == pytest.approx(1.0)


@pytest.mark.parametrize(("probes", "single_beats"), [(84, 1), (94, 5), (37, 1)])
def test_beta_binomial_without_overdispersion_is_the_binomial(
    probes: int, single_beats: int
) -> None:
    # A 6-subject gallery (5 impostors, 4 where one subject lacks the view) where a few probes
    # are each beaten by one impostor: the likelihood rises without end towards the binomial
    # (alpha, beta -> infinity). A ratio of betaln there gave a real report a rank-1 of 1e113;
    # the estimate must be the binomial's.
    available = np.full(probes, 5)
    available[-8:] = 4
    beaten = np.zeros(probes, dtype=np.int64)
    beaten[:single_beats] = 1
    alpha, beta = beta_binomial_fit(beaten, available)
    share = single_beats / available.sum()
    assert beta_binomial_rank1(alpha, beta, 49) == pytest.approx((1.0 - share) ** 49, abs=1e-4)


def test_beta_binomial_of_probes_never_beaten_is_certain() -> None:
    alpha, beta = beta_binomial_fit(np.zeros(60, dtype=np.int64), np.full(60, 11))
    assert beta_binomial_rank1(alpha, beta, 49) == pytest.approx(1.0, abs=1e-6)


def test_the_estimate_holds_every_figure_and_refuses_what_it_cannot_say(
    held_out: FeatureSet, distractors: FeatureSet
) -> None:
    estimates = estimate_gallery_size(held_out, 10, distractors=distractors, spec=SPEC)
    assert set(estimates) == {"NM", "CL"}
    for estimate in estimates.values():
        assert estimate.extrapolated <= estimate.exact + 1e-9
        assert estimate.padded is not None and estimate.padded <= estimate.exact + 1e-9
        assert 0.0 <= estimate.confusion[0] <= 1.0 and estimate.confusion[1] is not None
    assert "| NM |" in estimates_table(estimates)
    with pytest.raises(ProtocolError, match="smaller"):
        estimate_gallery_size(held_out, 4, spec=SPEC)
    with pytest.raises(ProtocolError, match="also held out"):
        impostor_counts(held_out, ("nm-05",), spec=SPEC, distractors=held_out)
    without = estimate_gallery_size(held_out, 10, spec=SPEC)
    assert without["NM"].padded is None and without["NM"].confusion[1] is None


def test_the_bench_reads_both_routes_of_the_same_walks(
    synthetic_root: Path, exported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bench/gallery_size.py`` on the synthetic walks, the 'clip' route a copy of the clean
    one: the two routes' figures agree, and a second run is served by the cache."""
    clips = tmp_path / "clips"
    shutil.copytree(synthetic_root, clips)
    out = tmp_path / "gallery.json"
    bench = load_bench("gallery_size")
    argv = [
        "--model", str(exported), "--data", str(synthetic_root), "--subjects", "001-004",
        "--gallery", "6", "--probe-data", str(clips), "--cache", str(tmp_path / "cache"),
        "--json", str(out),
    ]  # fmt: skip
    assert bench.main(argv) == 0
    first = json.loads(out.read_text())
    assert bench.main(argv) == 0
    assert json.loads(out.read_text()) == first
    clean, clip = first["estimates"]["clean"], first["estimates"]["clip"]
    assert set(clean) == {"NM", "BG", "CL"} and clean == clip
    assert "clip probes:" in capsys.readouterr().out


def test_a_casia_b_report_carries_the_rank1_of_a_50_subject_gallery() -> None:
    conditions = ("nm-01", "nm-02", "nm-03", "nm-04", "nm-05", "bg-01", "cl-01")
    features = _walks(HELD_OUT, conditions, noise=1.1, seed=3, all_views=CASIA_B_VIEWS)
    (result,) = run_protocol(features, "casia-b")
    assert set(result.larger_gallery) == {"NM", "BG", "CL"}
    for probe_set, rank1 in result.larger_gallery.items():
        assert 0.0 <= rank1 < result.mean[probe_set]  # 49 impostors, not 5
    assert "Extrapolated to a 50-subject gallery" in to_markdown([result])
    payload = to_json([result], {})["results"][0]["larger_gallery"]
    assert payload["subjects"] == 50 and set(payload["rank1"]) == {"NM", "BG", "CL"}
    (small,) = run_protocol(features.subset(np.isin(features.subjects, HELD_OUT[:3])), "casia-b")
    assert small.larger_gallery == {} and "Extrapolated" not in to_markdown([small])


def test_probes_at_views_the_protocol_does_not_know_are_left_out(held_out: FeatureSet) -> None:
    """As in the protocol's own table: a walk at an unknown view is in no cell."""
    views = held_out.views.copy()
    views[(held_out.conditions == "nm-05") & (held_out.views == "090")] = "045"
    odd = FeatureSet(held_out.subjects, held_out.conditions, views, held_out.embeddings)
    counts = impostor_counts(odd, ("nm-05",), spec=SPEC)
    assert set(counts.probe_view.tolist()) == {0, 2}
    protocol = evaluate_cross_view(odd, SPEC, "embedding").mean["NM"]
    assert subsampled_rank1(counts, len(HELD_OUT), len(SPEC.views)) == pytest.approx(protocol)
    elsewhere = FeatureSet(
        held_out.subjects,
        held_out.conditions,
        np.where(held_out.conditions == "cl-01", "045", held_out.views),
        held_out.embeddings,
    )
    assert set(estimate_gallery_size(elsewhere, 10, spec=SPEC)) == {"NM"}
