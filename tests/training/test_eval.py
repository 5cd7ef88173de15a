"""`gaitid eval` on a trained checkpoint and on its ONNX export: the same table to 0.1 point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gaitid.cli import app

runner = CliRunner()


def _eval(model: Path, root: Path, out: Path, *extra: str) -> dict:
    args = [
        "eval",
        str(model),
        "--data",
        str(root),
        "--partition",
        str(root / "partition.json"),
        "--out",
        str(out),
        *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "(%)" in result.output  # the markdown table is printed
    return json.loads((out / "report.json").read_text())


def test_checkpoint_and_onnx_give_the_same_casia_b_table(
    uninterrupted: Path, exported: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    ckpt = _eval(uninterrupted / "checkpoints" / "last.pt", synthetic_root, tmp_path / "ckpt")
    onnx = _eval(exported, synthetic_root, tmp_path / "onnx")
    assert [r["distance"] for r in ckpt["results"]] == ["part", "embedding"]
    assert [r["distance"] for r in onnx["results"]] == ["embedding"]  # no part features in ONNX
    a, b = ckpt["results"][1], onnx["results"][0]
    for probe_set in ("NM", "BG", "CL"):
        ta = np.array(a["tables"][probe_set], dtype=float)
        tb = np.array(b["tables"][probe_set], dtype=float)
        np.testing.assert_allclose(ta, tb, atol=0.1, equal_nan=True)
        assert a["mean"][probe_set] == pytest.approx(b["mean"][probe_set], abs=0.1)
    assert (tmp_path / "ckpt" / "heatmap-part.png").is_file()
    assert (tmp_path / "onnx" / "heatmap-embedding.png").is_file()
    assert "| NM |" in (tmp_path / "ckpt" / "report.md").read_text()
    assert "Rank-1 (%)" in (tmp_path / "onnx" / "report.md").read_text()


def test_retrieval_protocol_from_the_cli(
    uninterrupted: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    report = _eval(
        uninterrupted / "checkpoints" / "last.pt",
        synthetic_root,
        tmp_path,
        "--protocol",
        "retrieval",
        "--probe-conditions",
        "nm-05,bg-01,cl-01",
        "--gallery-conditions",
        "nm-01,nm-02",
    )
    for r in report["results"]:
        m = r["metrics"]
        assert m["num_probes"] == 2 * 2 * 3  # 2 test subjects x 2 views x 3 probe walks
        assert 0 <= m["mAP"] <= 100 and m["R@1"] <= m["R@5"] <= m["R@10"]


def test_eval_errors_exit_2_with_a_message(
    uninterrupted: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    ckpt = str(uninterrupted / "checkpoints" / "last.pt")
    result = runner.invoke(
        app, ["eval", ckpt, "--data", str(synthetic_root), "--subjects", "050-051"]
    )
    assert result.exit_code == 2 and "050" in result.output
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"not a model")
    result = runner.invoke(app, ["eval", str(bogus), "--data", str(synthetic_root)])
    assert result.exit_code == 2 and "neither an ONNX file" in result.output
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["eval", str(broken), "--data", str(synthetic_root)])
    assert result.exit_code == 2 and "broken.pt" in result.output


def test_an_onnx_file_that_breaks_the_contract_is_not_evaluated(tmp_path: Path) -> None:
    """Issue 16: the evaluation's ONNX path checks the contract like the service does."""
    from gaitid.training.evaluation.extract import ModelFileError, features_from_onnx
    from tests.utils.clips import red_person_onnx

    foreign = red_person_onnx(tmp_path / "foreign.onnx")  # a valid ONNX model, not a gaitid one
    with pytest.raises(ModelFileError, match="metadata_props lacks"):
        features_from_onnx(foreign, [], [])


def test_an_int8_file_this_cpu_would_saturate_is_not_evaluated(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gaitid.training.evaluation.extract import ModelFileError, features_from_onnx
    from tests.utils.cpu import pretend_cpu
    from tests.utils.onnx_models import with_metadata

    pretend_cpu(monkeypatch, tmp_path, "fpu avx2")
    labelled = with_metadata(exported, tmp_path / "int8.onnx", precision="int8")
    with pytest.raises(ModelFileError, match="8-bit weights"):
        features_from_onnx(labelled, [], [])


def test_calibrate_adds_the_open_set_calibration_of_the_same_embeddings(
    exported: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    common = ["eval", str(exported), "--data", str(synthetic_root), "--subjects", "001-004"]
    both, alone = tmp_path / "both", tmp_path / "alone"
    result = runner.invoke(
        app, [*common, "--calibrate", "--target-fmr", "0.01", "--out", str(both)]
    )
    assert result.exit_code == 0, result.output
    assert "(%)" in result.output and "Default threshold" in result.output
    result = runner.invoke(
        app, [*common, "--protocol", "open-set", "--target-fmr", "0.01", "--out", str(alone)]
    )
    assert result.exit_code == 0, result.output
    combined = json.loads((both / "calibration.json").read_text())
    separate = json.loads((alone / "calibration.json").read_text())
    assert combined["threshold"] == pytest.approx(separate["threshold"], abs=1e-6)
    assert (both / "report.json").is_file() and (both / "det.png").is_file()
    refused = runner.invoke(app, [*common, "--protocol", "open-set", "--calibrate"])
    assert refused.exit_code == 2 and "--calibrate" in refused.output
