"""Metrics on hand-built distance matrices with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gaitid.training.evaluation.metrics import (
    MetricInputError,
    cross_view_rank1,
    mean_excluding_identical,
    nan_mean,
    rank1_accuracy,
    rank1_hits,
    retrieval_metrics,
)


def test_rank1_counts_nearest_gallery_identity() -> None:
    # probe 0 (a): nearest gallery is a -> hit; probe 1 (b): nearest is a -> miss
    dist = np.array([[0.1, 0.5, 0.9], [0.2, 0.3, 0.4]])
    hits = rank1_hits(dist, ["a", "b"], ["a", "b", "c"])
    assert hits.tolist() == [True, False]
    assert rank1_accuracy(dist, ["a", "b"], ["a", "b", "c"]) == 0.5


def test_rank1_ties_go_to_first_gallery_item() -> None:
    dist = np.array([[0.3, 0.3]])
    assert rank1_accuracy(dist, ["b"], ["a", "b"]) == 0.0
    assert rank1_accuracy(dist, ["a"], ["a", "b"]) == 1.0


def test_retrieval_metrics_known_values() -> None:
    # gallery order by distance for probe x: [x, y, x, y]  -> matches at ranks 1, 3
    # AP = (1/1 + 2/3) / 2 = 5/6 ; INP = 2 / 3 ; R@1 = 1
    # probe y: order [x, x, y, y] -> matches at ranks 3, 4: AP = (1/3 + 2/4)/2 = 5/12
    # INP = 2/4 ; R@1 = 0, R@5 = 1
    # probe z has no match: left out
    gallery = ["x", "y", "x", "y"]
    dist = np.array(
        [
            [0.0, 0.1, 0.2, 0.3],
            [0.1, 0.3, 0.2, 0.4],
            [0.1, 0.2, 0.3, 0.4],
        ]
    )
    m = retrieval_metrics(dist, ["x", "y", "z"], gallery, ranks=(1, 2, 3, 5))
    assert m.num_probes == 3 and m.num_valid_probes == 2
    assert m.cmc == {1: 0.5, 2: 0.5, 3: 1.0, 5: 1.0}
    assert m.mean_ap == pytest.approx((5 / 6 + 5 / 12) / 2)
    assert m.mean_inp == pytest.approx((2 / 3 + 2 / 4) / 2)


def test_retrieval_without_any_match_is_nan() -> None:
    m = retrieval_metrics(np.zeros((1, 2)), ["q"], ["a", "b"])
    assert m.num_valid_probes == 0 and math.isnan(m.mean_ap)


def test_cross_view_table_restricts_gallery_per_view() -> None:
    # two subjects s1, s2; gallery one walk per subject per view (A, B); probes one per view
    gallery_labels = ["s1", "s2", "s1", "s2"]
    gallery_views = ["A", "A", "B", "B"]
    probe_labels = ["s1", "s2", "s1"]
    probe_views = ["A", "A", "B"]
    dist = np.array(
        [
            # gA-s1 gA-s2 gB-s1 gB-s2
            [0.1, 0.9, 0.2, 0.8],  # probe s1@A: right in A and in B
            [0.2, 0.9, 0.9, 0.1],  # probe s2@A: wrong in A (s1 nearer), right in B
            [0.5, 0.4, 0.1, 0.7],  # probe s1@B: wrong in A, right in B
        ]
    )
    table = cross_view_rank1(
        dist, probe_labels, probe_views, gallery_labels, gallery_views, ["A", "B"]
    )
    np.testing.assert_allclose(table, [[0.5, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(mean_excluding_identical(table), [1.0, 0.0])


def test_cross_view_exclude_unmatched_drops_probes_without_gallery() -> None:
    # gallery view A has only s1; the s2 probe counts as a miss unless excluded
    dist = np.array([[0.1], [0.2]])
    args = (dist, ["s1", "s2"], ["A", "A"], ["s1"], ["A"], ["A", "B"])
    counted = cross_view_rank1(*args)
    dropped = cross_view_rank1(*args, exclude_unmatched=True)
    assert counted[0, 0] == 0.5 and dropped[0, 0] == 1.0
    assert np.isnan(counted[0, 1]) and np.isnan(counted[1]).all()  # empty cells are NaN


def test_mean_excluding_identical_ignores_diagonal_and_nan() -> None:
    table = np.array([[1.0, 0.5, np.nan], [0.2, 1.0, 0.4], [np.nan, np.nan, 0.9]])
    out = mean_excluding_identical(table)
    assert out[0] == pytest.approx(0.5) and out[1] == pytest.approx(0.3) and np.isnan(out[2])
    assert nan_mean(out) == pytest.approx(0.4)


def test_metric_inputs_are_checked() -> None:
    with pytest.raises(MetricInputError, match="does not match"):
        rank1_hits(np.zeros((2, 3)), ["a"], ["a", "b", "c"])
    with pytest.raises(MetricInputError, match="NaN"):
        retrieval_metrics(np.array([[np.nan]]), ["a"], ["a"])
    with pytest.raises(MetricInputError, match="square"):
        mean_excluding_identical(np.zeros((2, 3)))
    with pytest.raises(MetricInputError, match="ranks"):
        retrieval_metrics(np.zeros((1, 1)), ["a"], ["a"], ranks=(0,))
