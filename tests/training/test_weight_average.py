"""``gaitid average``: the uniform weight average of one network's checkpoints, head refitted."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gaitid.cli import app
from gaitid.model.export import CheckpointError, load_checkpoint_model, read_checkpoint
from gaitid.training.checkpoint import save_checkpoint
from gaitid.training.weight_average import average_checkpoints


def _snapshots(run: Path) -> list[Path]:
    return [run / "checkpoints" / "iter-0000002.pt", run / "checkpoints" / "iter-0000004.pt"]


def test_the_average_is_the_mean_of_every_weight_and_drops_what_was_fitted(
    uninterrupted: Path,
) -> None:
    first, second = (read_checkpoint(path) for path in _snapshots(uninterrupted))
    averaged = average_checkpoints(_snapshots(uninterrupted))
    floats = [k for k, v in first["model"].items() if v.is_floating_point()]
    assert any(not torch.equal(first["model"][k], second["model"][k]) for k in floats)
    for name in floats:
        expected = (first["model"][name].double() + second["model"][name].double()) / 2
        torch.testing.assert_close(averaged["model"][name], expected.to(first["model"][name].dtype))
    assert not bool(averaged["model"]["embedding_head.fitted"])
    assert "optimizer" not in averaged and "rng" not in averaged
    assert averaged["meta"]["averaged_from"] == [
        {"file": "iter-0000002.pt", "iteration": 2},
        {"file": "iter-0000004.pt", "iteration": 4},
    ]
    assert averaged["meta"]["version"].endswith(".avg2")
    assert "embedding_fit" not in averaged["meta"]


def test_averaging_refuses_other_networks_and_single_files(
    uninterrupted: Path, tmp_path: Path
) -> None:
    first, second = _snapshots(uninterrupted)
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([first])
    other = read_checkpoint(second)
    other["labels"] = ["001", "099"]
    save_checkpoint(other, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="differ in labels"):
        average_checkpoints([first, tmp_path / "other.pt"])
    reshaped = read_checkpoint(second)
    name = next(k for k, v in reshaped["model"].items() if v.is_floating_point() and v.ndim > 1)
    reshaped["model"][name] = reshaped["model"][name][:1]
    save_checkpoint(reshaped, tmp_path / "reshaped.pt")
    with pytest.raises(CheckpointError, match="different weight tensors"):
        average_checkpoints([first, tmp_path / "reshaped.pt"])


def test_average_command_writes_a_fitted_exportable_average(
    uninterrupted: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    out = tmp_path / "swa.pt"
    paths = [str(path) for path in _snapshots(uninterrupted)]
    result = CliRunner().invoke(
        app,
        ["average", *paths, "--data", str(synthetic_root), "--out", str(out), "--max-frames", "6"],
    )
    assert result.exit_code == 0, result.output
    model, state = load_checkpoint_model(out)
    assert model.embedding_head.is_fitted
    assert state["meta"]["embedding_fit"]["subjects"] == "001..002 (2)"
    assert len(state["meta"]["averaged_from"]) == 2
    exported = CliRunner().invoke(app, ["export", str(out), "--out", str(tmp_path / "swa.onnx")])
    assert exported.exit_code == 0, exported.output


def test_average_command_reports_bad_input_without_writing(
    uninterrupted: Path, synthetic_root: Path
) -> None:
    first, second = _snapshots(uninterrupted)
    before = first.read_bytes()
    result = CliRunner().invoke(
        app,
        ["average", str(first), str(second), "--data", str(synthetic_root), "--out", str(first)],
    )
    assert result.exit_code == 2 and "write the average elsewhere" in result.output
    assert first.read_bytes() == before
    single = CliRunner().invoke(
        app, ["average", str(first), "--data", str(synthetic_root), "--out", str(first) + ".avg"]
    )
    assert single.exit_code == 2 and "at least two" in single.output
    empty = synthetic_root.parent / "empty"
    empty.mkdir(exist_ok=True)
    target = first.parent / "average.pt"
    unfit = CliRunner().invoke(
        app, ["average", str(first), str(second), "--data", str(empty), "--out", str(target)]
    )
    assert unfit.exit_code == 2 and "error:" in unfit.output
    assert not target.exists()  # no headless average is left behind
