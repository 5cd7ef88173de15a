"""ONNX export: contract names/shapes/metadata, parity with PyTorch, fp16, checkpoints, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from gaitid.cli import build_app
from gaitid.contract import (
    DEFAULT_TEST_TIME_SHIFTS,
    EMBEDDING_DIM,
    INPUT_LENGTHS,
    INPUT_SILHOUETTES,
    METADATA_KEYS,
    OUTPUT_EMBEDDING,
    ContractError,
    shift_offsets,
)
from gaitid.model import create_model
from gaitid.model.export import (
    CheckpointError,
    export_onnx,
    load_checkpoint_model,
)
from gaitid.model.lmgcs import EmbeddingOnly
from gaitid.model.test_time import ensemble_embedding
from tests.model.conftest import make_batch

PARITY_BATCHES = [[1], [2], [7], [30], [100], [30, 1, 7, 2, 100]]


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session: ort.InferenceSession, silhouettes: torch.Tensor, lengths: torch.Tensor):
    feeds = {INPUT_SILHOUETTES: silhouettes.numpy(), INPUT_LENGTHS: lengths.numpy()}
    return session.run([OUTPUT_EMBEDDING], feeds)[0]


def test_graph_follows_the_contract(tiny_onnx: Path) -> None:
    proto = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(proto)
    inputs = {i.name: i.type.tensor_type for i in proto.graph.input}
    outputs = {o.name: o.type.tensor_type for o in proto.graph.output}
    assert list(inputs) == [INPUT_SILHOUETTES, INPUT_LENGTHS]
    assert list(outputs) == [OUTPUT_EMBEDDING]
    assert inputs[INPUT_SILHOUETTES].elem_type == onnx.TensorProto.FLOAT
    assert inputs[INPUT_LENGTHS].elem_type == onnx.TensorProto.INT64
    assert outputs[OUTPUT_EMBEDDING].elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inputs[INPUT_SILHOUETTES].shape.dim]
    assert isinstance(dims[0], str) and isinstance(dims[1], str) and dims[2:] == [64, 44]
    out_dims = [d.dim_param or d.dim_value for d in outputs[OUTPUT_EMBEDDING].shape.dim]
    assert out_dims[1] == EMBEDDING_DIM
    meta = {p.key: p.value for p in proto.metadata_props}
    assert set(METADATA_KEYS) <= set(meta)
    assert meta["variant"] == "tiny" and meta["embedding_dim"] == str(EMBEDDING_DIM)
    assert meta["metric"] == "cosine" and meta["input_size"] == "64x44"
    # no classifier in the graph: the export model has none and no BatchNorm survives
    assert not any(node.op_type == "BatchNormalization" for node in proto.graph.node)


@pytest.mark.parametrize("walks", PARITY_BATCHES, ids=lambda w: "x".join(map(str, w)))
def test_onnx_runtime_matches_pytorch(tiny_onnx: Path, walks: list[int]) -> None:
    torch.manual_seed(0)  # export_tiny_onnx uses seed 0
    # the export averages the default test-time shift set in its graph
    network = EmbeddingOnly(create_model("tiny")).eval()
    silhouettes, lengths = make_batch(walks, seed=len(walks))
    with torch.no_grad():
        expected = ensemble_embedding(
            network(silhouettes, lengths),
            lambda shifted: network(shifted, lengths),
            silhouettes,
            shift_offsets(DEFAULT_TEST_TIME_SHIFTS),
        ).numpy()
    got = _run(_session(tiny_onnx), silhouettes, lengths)
    assert got.shape == (len(walks), EMBEDDING_DIM)
    assert np.abs(got - expected).max() <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_export_metadata_is_checked(tmp_path: Path) -> None:
    model = create_model("tiny")
    with pytest.raises(ContractError, match="training_data"):
        export_onnx(model, tmp_path / "m.onnx", metadata={"variant": "tiny", "version": "1"})
    with pytest.raises(ContractError, match="contradicts"):
        export_onnx(
            model,
            tmp_path / "m.onnx",
            metadata={"variant": "t", "version": "1", "training_data": "x", "metric": "l2"},
        )


def _write_checkpoint(path: Path, num_classes: int = 3) -> torch.nn.Module:
    """A checkpoint in the trainer's format, including its numpy RNG state and paths, with
    the embedding head fitted (as `gaitid train` leaves it)."""
    torch.manual_seed(7)
    model = create_model("tiny", num_classes=num_classes)
    head = model.embedding_head
    head.set_reduction(0.01 * torch.randn(head.in_dim), torch.randn(head.in_dim, head.out_dim))
    torch.save(
        {
            "model": model.state_dict(),
            "model_config": model.config.model_dump(),
            "num_classes": num_classes,
            "meta": {"variant": "tiny", "version": "test-1", "training_data": "synthetic"},
            "rng": {"numpy": np.random.get_state()},
            "config": {"data": {"root": Path("/data")}},
            "iteration": 12,
        },
        path,
    )
    return model


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    original = _write_checkpoint(tmp_path / "c.pt").eval()
    model, state = load_checkpoint_model(tmp_path / "c.pt")
    assert state["iteration"] == 12 and not model.training
    silhouettes, lengths = make_batch([4, 2])
    with torch.no_grad():
        torch.testing.assert_close(
            model(silhouettes, lengths).logits, original(silhouettes, lengths).logits
        )


def test_bad_checkpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint_model(tmp_path / "missing.pt")
    torch.save({"model": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks \\['model_config', 'num_classes'\\]"):
        load_checkpoint_model(tmp_path / "partial.pt")
    model = create_model("tiny")
    torch.save(
        {
            "model": model.state_dict(),
            "model_config": {**model.config.model_dump(), "parts": 2},
            "num_classes": 0,
        },
        tmp_path / "mismatch.pt",
    )
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint_model(tmp_path / "mismatch.pt")


def test_cli_exports_a_checkpoint_in_fp16(tmp_path: Path) -> None:
    """`gaitid export CHECKPOINT --out m.onnx --fp16`: float16 weights, float32 I/O, runs."""
    model = _write_checkpoint(tmp_path / "c.pt").eval()
    out = tmp_path / "m16.onnx"
    result = CliRunner().invoke(
        build_app(), ["export", str(tmp_path / "c.pt"), "--out", str(out), "--fp16"]
    )
    assert result.exit_code == 0, result.output
    proto = onnx.load(str(out))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["precision"] == "float16" and meta["version"] == "test-1"
    assert meta["iteration"] == "12" and meta["training_data"] == "synthetic"
    assert "(fitted)" in meta["embedding"]
    float_types = {t.data_type for t in proto.graph.initializer} - {onnx.TensorProto.INT64}
    assert float_types == {onnx.TensorProto.FLOAT16}
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    silhouettes, lengths = make_batch([6, 3])
    with torch.no_grad():
        expected = model(silhouettes, lengths).embedding.numpy()
    got = _run(_session(out), silhouettes, lengths)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-2  # float16 rounding, not a different model


def test_cli_rejects_ambiguous_or_unknown_requests(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(build_app(), ["export", "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code != 0 and "exactly one of" in result.output
    result = runner.invoke(
        build_app(), ["export", "--random-init", "huge", "--out", str(tmp_path / "m.onnx")]
    )
    assert result.exit_code != 0 and "unknown variant" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["paper", "lite"])
def test_random_init_export_runs_for_one_and_hundred_frames(tmp_path: Path, variant: str) -> None:
    """Acceptance: `gaitid export --random-init paper` runs in ORT for T=1 and T=100."""
    out = tmp_path / f"{variant}.onnx"
    result = CliRunner().invoke(
        build_app(), ["export", "--random-init", variant, "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    session = _session(out)
    torch.manual_seed(0)
    reference = EmbeddingOnly(create_model(variant)).eval()
    for walks in ([1], [100], [100, 1, 30]):
        silhouettes, lengths = make_batch(walks)
        got = _run(session, silhouettes, lengths)
        assert got.shape == (len(walks), EMBEDDING_DIM) and np.isfinite(got).all()
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        with torch.no_grad():
            expected = reference(silhouettes, lengths).numpy()
        assert np.abs(got - expected).max() <= 1e-4
