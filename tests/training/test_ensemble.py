"""``gaitid ensemble``: independently trained networks read side by side, one fitted head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from typer.testing import CliRunner

from gaitid.cli import app
from gaitid.contract import batch_sequences
from gaitid.model.ensemble import LMGCSEnsemble
from gaitid.model.export import (
    CheckpointError,
    checkpoint_model,
    load_checkpoint_model,
    read_checkpoint,
)
from gaitid.model.lmgcs import LMGCS
from gaitid.model.quantize import quantize_int8
from gaitid.model.shift_graph import one_pass_graph
from gaitid.training.checkpoint import save_checkpoint
from gaitid.training.ensemble import ensemble_checkpoint
from gaitid.training.evaluation.extract import torch_features


def _members(run: Path) -> list[Path]:
    # two states of one tiny run stand in for two independent networks: what the ensemble
    # does with them does not depend on how they were trained
    return [run / "checkpoints" / "iter-0000002.pt", run / "checkpoints" / "iter-0000004.pt"]


def _walks(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    silhouettes = (torch.rand(3, 9, 64, 44, generator=generator) > 0.6).float()
    return silhouettes, torch.tensor([9, 6, 4])


def test_the_ensemble_reads_every_member_whole_and_joins_their_part_features(
    uninterrupted: Path,
) -> None:
    joined = ensemble_checkpoint(_members(uninterrupted))
    ensemble = checkpoint_model(joined, "joined")
    assert isinstance(ensemble, LMGCSEnsemble) and len(ensemble.networks) == 2
    assert not ensemble.embedding_head.is_fitted
    silhouettes, lengths = _walks(torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = ensemble(silhouettes, lengths)
        expected = []
        for path in _members(uninterrupted):
            member, _ = load_checkpoint_model(path)
            assert isinstance(member, LMGCS)
            expected.append(member(silhouettes, lengths).part_features)
    torch.testing.assert_close(out.part_features, torch.cat(expected, dim=1))
    assert out.logits is None
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(3))
    meta = joined["meta"]
    assert meta["variant"] == "tiny+tiny" and meta["train_subjects"] == ["001", "002"]
    assert meta["version"].count("+") == 2 and len(meta["ensemble_of"]) == 2
    for member in joined["members"]:
        assert member["meta"]["file"].startswith("iter-")
        assert "embedding_fit" not in member["meta"] and "default_threshold" not in member["meta"]
        assert "root" not in member["recipe"].get("data", {})  # no local path travels


def test_an_ensemble_needs_two_distinct_plain_networks(uninterrupted: Path, tmp_path: Path) -> None:
    first, second = _members(uninterrupted)
    with pytest.raises(CheckpointError, match="at least two"):
        ensemble_checkpoint([first])
    with pytest.raises(CheckpointError, match="given twice"):
        ensemble_checkpoint([first, first])
    nested = save_checkpoint(ensemble_checkpoint([first, second]), tmp_path / "ensemble.pt")
    with pytest.raises(CheckpointError, match="ensemble already"):
        ensemble_checkpoint([nested, first])
    broken = read_checkpoint(nested)
    del broken["members"][1]["num_classes"]
    with pytest.raises(CheckpointError, match="member 1 lacks"):
        checkpoint_model(broken, "broken")
    alone = read_checkpoint(nested)
    alone["members"] = alone["members"][:1]
    with pytest.raises(CheckpointError, match="at least two members"):
        checkpoint_model(alone, "alone")


def test_ensemble_command_fits_a_head_that_exports_to_the_same_embedding(
    uninterrupted: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    out = tmp_path / "ensemble.pt"
    members = [str(path) for path in _members(uninterrupted)]
    result = CliRunner().invoke(
        app,
        [
            *("ensemble", *members, "--data", str(synthetic_root), "--out", str(out)),
            *("--max-frames", "6", "--version", "0.1.0+two"),
        ],
    )
    assert result.exit_code == 0, result.output
    model, state = load_checkpoint_model(out)
    assert isinstance(model, LMGCSEnsemble) and model.embedding_head.is_fitted
    assert state["meta"]["embedding_fit"]["subjects"] == "001..002 (2)"
    onnx_path, weights = tmp_path / "ensemble.onnx", tmp_path / "weights.pt"
    exported = CliRunner().invoke(
        app,
        [
            *("export", str(out), "--out", str(onnx_path)),
            *("--weights", str(weights), "--shifts", "cross"),
        ],
    )
    assert exported.exit_code == 0, exported.output
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["variant"] == "tiny+tiny"
    generator = np.random.default_rng(1)
    walks = [(generator.random((n, 64, 44)) > 0.6).astype(np.uint8) * 255 for n in (9, 6, 4)]
    silhouettes, lengths = batch_sequences(walks)
    (served,) = session.run(None, {"silhouettes": silhouettes, "lengths": lengths})
    reference, _ = torch_features(model, walks, device=torch.device("cpu"), shifts="cross")
    np.testing.assert_allclose(served, reference, atol=1e-4)
    # quantised like one network: the joint pass (both members) taken out, calibrated and
    # wrapped in the same shifts. Not compared with fp32 here: a 4-iteration network's fitted
    # head magnifies int8 rounding alike with one member or two (real files: `gaitid quantize`)
    int8 = tmp_path / "ensemble.int8.onnx"
    quantize_int8(onnx_path, int8, walks, method="minmax")
    fp32_pass, int8_pass = (one_pass_graph(onnx.load(str(p))) for p in (onnx_path, int8))
    convs = sum(node.op_type == "Conv" for node in fp32_pass.graph.node)
    assert convs == sum(node.op_type == "Conv" for node in int8_pass.graph.node)
    assert "QuantizeLinear" in {node.op_type for node in int8_pass.graph.node}
    quantized = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    (approx,) = quantized.run(None, {"silhouettes": silhouettes, "lengths": lengths})
    np.testing.assert_allclose(np.linalg.norm(approx, axis=1), 1.0, atol=1e-4)
    shipped, shipped_state = load_checkpoint_model(weights)  # the weights file reloads whole
    assert isinstance(shipped, LMGCSEnsemble)
    assert [m["meta"]["file"] for m in shipped_state["members"]] == [
        "iter-0000002.pt",
        "iter-0000004.pt",
    ]
    assert str(tmp_path) not in repr(read_checkpoint(weights))


def test_training_continues_one_chosen_member_of_an_ensemble(
    uninterrupted: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    import yaml

    from tests.training.conftest import tiny_config

    first, second = _members(uninterrupted)
    joined = save_checkpoint(ensemble_checkpoint([first, second]), tmp_path / "ensemble.pt")
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(tiny_config(synthetic_root)))
    args = ["train", str(config), "--init", str(joined), "--stop-after", "1"]
    unchosen = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert unchosen.exit_code == 2 and "ensemble of 2 networks" in unchosen.output
    missing = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--init-member", "2"])
    assert missing.exit_code == 2 and "members 0..1, not 2" in missing.output
    run = tmp_path / "c"
    chosen = CliRunner().invoke(app, [*args, "--out", str(run), "--init-member", "1"])
    assert chosen.exit_code == 0, chosen.output
    meta = read_checkpoint(run / "checkpoints" / "last.pt")["meta"]
    assert meta["continued_from"] == read_checkpoint(second)["meta"]["version"]
    assert meta["total_iterations"] == 4 + 1
