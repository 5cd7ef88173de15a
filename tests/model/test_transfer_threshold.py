"""`gaitid transfer-threshold`: a model with no held-out people gets a calibrated model's
thresholds, moved by the shift measured between the two on the same walks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gaitid.cli import build_app
from gaitid.model.cli import _route_threshold
from gaitid.model.quantize import quantize_int8
from gaitid.preprocess import to_network_input
from gaitid.training.data.opengait import load_dataset, parse_subject_spec
from gaitid.training.evaluation.extract import features_from_onnx, load_eval_walks
from gaitid.training.evaluation.open_set import (
    read_threshold,
    threshold_at_fmr,
    verification_scores,
)
from tests.utils.onnx_models import with_metadata
from tests.utils.synthetic import make_synthetic_dataset

ROUTE_SHIFT = {"shift": 0.0125, "impostor_scores": 10, "probe_walks": 4, "target_fmr": 0.1}


@pytest.fixture(scope="module")
def models(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A calibrated reference (default and clip thresholds, the clip's a route shift), a model
    derived from it (its int8 file: other scores on the same walks), and the walks."""
    base = tmp_path_factory.mktemp("transfer")
    conditions = ("nm-01", "nm-02", "nm-05", "bg-01")  # gallery and probe walks
    root = make_synthetic_dataset(base / "data", subjects=3, views=(0, 90), conditions=conditions)
    clip_record = json.dumps({"probes": "clip walks (test)", "route_shift": ROUTE_SHIFT})
    reference = with_metadata(
        tiny_onnx,
        base / "reference.onnx",
        version="ref-1",
        default_threshold="0.400000",
        threshold_calibration=json.dumps({"calibrated_on": "ref, subjects 063"}),
        clip_threshold="0.412500",
        clip_threshold_calibration=clip_record,
    )
    walks = load_dataset(root)
    derived = base / "derived.onnx"
    quantize_int8(tiny_onnx, derived, [to_network_input(walks[k]) for k in sorted(walks)][:4])
    return {"root": root, "reference": reference, "derived": derived, "plain": tiny_onnx}


def _run(models: dict[str, Path], out: Path, *extra: str, reference: str = "reference") -> object:
    args = ["transfer-threshold", str(models[reference]), str(models["derived"]), "--out"]
    args += [str(out), "--data", str(models["root"]), "--target-fmr", "0.1", *extra]
    return CliRunner().invoke(build_app(), args)


def test_thresholds_move_by_the_shift_measured_on_the_same_walks(
    models: dict[str, Path], tmp_path: Path
) -> None:
    result = _run(models, tmp_path / "cal", "--subjects", "001-003")
    assert result.exit_code == 0, result.output
    # the shift, computed here from both models' impostor scores on the same walks
    keys, walks = load_eval_walks(models["root"], parse_subject_spec("001-003"))
    at_fmr = [
        threshold_at_fmr(
            verification_scores(features_from_onnx(models[name], keys, walks))["identity"].impostor,
            0.1,
        )
        for name in ("reference", "derived")
    ]
    shift = at_fmr[1] - at_fmr[0]
    threshold, provenance = read_threshold(tmp_path / "cal" / "calibration.json")
    assert threshold == pytest.approx(0.4 + shift, abs=1e-6)
    transfer = provenance["transfer"]
    assert transfer["reference"] == "ref-1" and transfer["transferred_from_reference"] == 0.4
    assert transfer["shift"] == pytest.approx(shift, abs=1e-6)
    assert "data, subjects 001-003" in transfer["shift_measured_on"]
    # the reference's own calibration travels with it; the record says what was measured where
    assert transfer["reference_calibration"] == {"calibrated_on": "ref, subjects 063"}
    assert provenance["calibrated_on"].startswith("carried from ref-1 by the shift measured on")
    written = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert written["subjects"] == ["001", "002", "003"]
    assert provenance["probes"] == "silhouettes" and provenance["test_time_shifts"] == "cross"
    assert "0.4000 of the reference (reference.onnx) model shifted by" in result.output
    # the clip threshold: the carried default moved by the reference's own route shift, as
    # `gaitid export --clip-threshold-from` reads it
    clip, clip_provenance = read_threshold(tmp_path / "cal" / "clip-calibration.json")
    assert clip == pytest.approx(0.4125 + shift, abs=1e-6)
    assert clip_provenance["route_shift"] == ROUTE_SHIFT
    exported, _ = _route_threshold(threshold, clip, clip_provenance)
    assert exported == pytest.approx(threshold + ROUTE_SHIFT["shift"], abs=1e-6)
    assert np.isclose(exported, clip, atol=1e-6)


def test_refuses_a_reference_without_a_calibration_or_another_embedding_function(
    models: dict[str, Path], tmp_path: Path
) -> None:
    result = _run(models, tmp_path / "a", reference="plain")
    assert result.exit_code == 2 and "no calibrated default_threshold" in result.output
    other = with_metadata(models["reference"], tmp_path / "one-pass.onnx", test_time_shifts="none")
    result = _run({**models, "other": other}, tmp_path / "b", reference="other")
    assert result.exit_code == 2 and "different embedding functions" in result.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
