"""Open-set calibration: FMR/FNMR, DET, DIR at FAR 1 % and the threshold, on known scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gaitid.training.evaluation.open_set import (
    ScoreSets,
    calibrate,
    det_curve,
    fmr_fnmr,
    identity_scores,
    read_threshold,
    threshold_at_fmr,
    write_calibration,
)
from gaitid.training.evaluation.protocols import (
    CASIA_B_GALLERY,
    CASIA_B_PROBES,
    FeatureSet,
    ProtocolError,
)


def _features(subjects: int, noise: float, seed: int = 0) -> FeatureSet:
    """Walks of ``subjects`` identities: a unit centre per identity plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(subjects, 32))
    conditions = [*CASIA_B_GALLERY, *(c for cs in CASIA_B_PROBES.values() for c in cs)]
    rows = [(s, c, v) for s in range(subjects) for c in conditions for v in ("000", "090")]
    emb = np.stack([centres[s] + noise * rng.normal(size=32) for s, _, _ in rows])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return FeatureSet(
        subjects=np.array([f"{s:03d}" for s, _, _ in rows]),
        conditions=np.array([c for _, c, _ in rows]),
        views=np.array([v for _, _, v in rows]),
        embeddings=emb.astype(np.float32),
    )


def test_threshold_at_fmr_allows_at_most_the_target_share() -> None:
    impostor = np.linspace(0.0, 0.999, 1000)
    t = threshold_at_fmr(impostor, 0.01)
    assert np.sum(impostor >= t) == 10 and np.sum(impostor >= np.nextafter(t, -1)) == 11
    assert np.sum(impostor >= threshold_at_fmr(impostor, 1e-4)) == 0
    with pytest.raises(ProtocolError):
        threshold_at_fmr(np.array([]), 0.01)


def test_fmr_fnmr_and_det_curve_count_ties_as_matches() -> None:
    scores = ScoreSets(genuine=np.array([0.5, 0.7, 0.9]), impostor=np.array([0.1, 0.5, 0.6]))
    assert fmr_fnmr(scores, 0.5) == pytest.approx((2 / 3, 0.0))
    assert fmr_fnmr(scores, 0.65) == pytest.approx((0.0, 1 / 3))
    fmr, fnmr, thresholds = det_curve(scores)
    i = int(np.flatnonzero(thresholds == 0.6)[0])
    assert (fmr[i], fnmr[i]) == pytest.approx((1 / 3, 1 / 3))
    assert np.all(np.diff(fmr) <= 0) and np.all(np.diff(fnmr) >= 0)


def test_identity_score_is_the_best_template() -> None:
    scores = np.array([[0.1, 0.9, 0.3], [0.8, 0.2, 0.4]])
    out = identity_scores(scores, np.array(["a", "a", "b"]), np.array(["a", "b"]))
    assert out.tolist() == [[0.9, 0.3], [0.8, 0.4]]


def test_separable_identities_calibrate_to_a_clean_threshold(tmp_path: Path) -> None:
    result = calibrate(_features(8, noise=0.05), target_fmr=1e-3, splits=5)
    identity = result.regimes["identity"]
    assert identity["genuine"] == 8 * 6 * 2 and identity["impostor"] == 8 * 6 * 2 * 7
    assert identity["eer"] == 0.0 and result.at_threshold["identity"]["fnmr"] == 0.0
    assert result.at_threshold["identity"]["fmr"] <= 1e-3
    assert result.open_set["dir"] == {"NM": 100.0, "BG": 100.0, "CL": 100.0}
    paths = write_calibration(result, tmp_path / "cal", model="m.onnx", shifts="cross")
    assert [p.name for p in paths] == ["calibration.json", "calibration.md", "det.png"]
    record = json.loads(paths[0].read_text())
    assert record["model"] == "m.onnx" and "curves" not in record
    threshold, provenance = read_threshold(paths[0])
    assert threshold == pytest.approx(result.threshold) and provenance["target_fmr"] == 1e-3
    assert provenance["test_time_shifts"] == "cross"
    del record["test_time_shifts"]  # a calibration written before the shift sets
    paths[0].write_text(json.dumps(record))
    assert read_threshold(paths[0])[1]["test_time_shifts"] == "none"


def test_noisy_identities_trade_fnmr_for_fmr() -> None:
    result = calibrate(_features(10, noise=1.2), target_fmr=1e-2, splits=5)
    identity = result.regimes["identity"]
    assert 0.0 < identity["eer"] < 0.5
    assert result.at_threshold["identity"]["fmr"] <= 1e-2
    assert result.at_threshold["identity"]["fnmr"] > identity["eer"]  # strict FMR costs FNMR
    assert 0.0 < result.open_set["dir_all"] < 100.0


def test_bad_calibration_files_and_inputs_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text('{"threshold": 3, "target_fmr": 0.001}')
    with pytest.raises(ProtocolError, match=r"\[-1, 1\]"):
        read_threshold(bad)
    bad.write_text("not json")
    with pytest.raises(ProtocolError, match="not a calibration"):
        read_threshold(bad)
    with pytest.raises(ProtocolError, match="target FMR"):
        calibrate(_features(4, noise=0.1), target_fmr=0.0)
    with pytest.raises(ProtocolError, match="four subjects"):
        calibrate(_features(3, noise=0.1), splits=2)
