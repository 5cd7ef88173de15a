"""Carrying a calibrated threshold to a derived model by its measured shift at the target FMR."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gaitid.training.evaluation.open_set import threshold_at_fmr, verification_scores
from gaitid.training.evaluation.protocols import CASIA_B_GALLERY, ProtocolError
from gaitid.training.evaluation.threshold_transfer import (
    measure_route_shift,
    route_threshold,
    transfer_threshold,
)
from tests.training.test_open_set import _features


def test_the_threshold_moves_as_far_as_the_derived_scores_moved() -> None:
    reference = _features(subjects=8, noise=0.8)
    # a derived model whose embeddings are the reference's, slightly perturbed and pulled
    # towards a common direction: every score rises, so its FMR threshold rises
    rng = np.random.default_rng(1)
    moved = reference.embeddings + 0.05 * rng.normal(size=reference.embeddings.shape) + 0.15
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    derived = dataclasses.replace(reference, embeddings=moved.astype(np.float32))
    transfer = transfer_threshold(reference, derived, 0.48, target_fmr=1e-2)
    ref_at = threshold_at_fmr(verification_scores(reference)["identity"].impostor, 1e-2)
    der_at = threshold_at_fmr(verification_scores(derived)["identity"].impostor, 1e-2)
    assert der_at > ref_at
    assert transfer.threshold == pytest.approx(0.48 + der_at - ref_at)
    assert (transfer.reference_at_fmr, transfer.derived_at_fmr) == (ref_at, der_at)
    text = transfer.describe("subjects 063-074")
    assert "0.4800" in text and f"{der_at - ref_at:+.4f}" in text and "063-074" in text
    record = transfer.provenance("subjects 063-074", '{"target_fmr": 0.001}')
    assert record["float32_calibration"] == {"target_fmr": 0.001}
    assert record["shift"] == pytest.approx(der_at - ref_at, abs=1e-6)
    assert transfer.provenance("x", "not json")["float32_calibration"] == "not json"
    # the same model carries the threshold unchanged
    assert transfer_threshold(reference, reference, 0.48).threshold == pytest.approx(0.48)


def test_the_two_models_must_embed_the_same_walks() -> None:
    reference = _features(subjects=4, noise=0.5)
    shuffled = dataclasses.replace(reference, subjects=reference.subjects[::-1].copy())
    with pytest.raises(ProtocolError, match="same walks"):
        transfer_threshold(reference, shuffled, 0.5)
    with pytest.raises(ProtocolError, match="target FMR"):
        transfer_threshold(reference, reference, 0.5, target_fmr=0.0)


def test_a_route_shift_is_measured_walk_for_walk_and_moves_the_default() -> None:
    """The clip route's threshold is the clean default moved by how the route moves impostor
    scores on the same walks, not the threshold of the route's readings on their own."""
    silhouettes = _features(subjects=8, noise=0.8)
    probes = ~np.isin(silhouettes.conditions, CASIA_B_GALLERY)
    rng = np.random.default_rng(2)
    read = silhouettes.embeddings.copy()  # the route blurs every probe walk: scores fall
    read[probes] += 0.4 * rng.normal(size=read[probes].shape)
    read /= np.linalg.norm(read, axis=1, keepdims=True)
    route = dataclasses.replace(silhouettes, embeddings=read.astype(np.float32))
    shift = measure_route_shift(silhouettes, route, target_fmr=1e-2)
    own = threshold_at_fmr(verification_scores(route)["identity"].impostor, 1e-2)
    clean = threshold_at_fmr(verification_scores(silhouettes)["identity"].impostor, 1e-2)
    assert (shift.route_at_fmr, shift.silhouettes_at_fmr) == (own, clean)
    assert shift.probe_walks == int(probes.sum()) and shift.impostor_scores > 0
    record = shift.as_record()
    assert record["shift"] == pytest.approx(own - clean, abs=1e-6)
    assert route_threshold(0.5, record) == pytest.approx(0.5 + own - clean, abs=1e-6)
    assert route_threshold(0.99, {"shift": 0.5}) == 1.0  # stays a cosine score
    with pytest.raises(ProtocolError, match="route-shift"):
        route_threshold(0.5, {"threshold": 0.4})
