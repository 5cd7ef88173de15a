"""The shift ensemble written in ONNX: the same function as the PyTorch one, and reversible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from gaitid.contract import (
    INPUT_LENGTHS,
    INPUT_SILHOUETTES,
    OUTPUT_EMBEDDING,
    TEST_TIME_SHIFT_OFFSETS,
    TEST_TIME_SHIFTS_KEY,
)
from gaitid.model.shift_graph import ShiftGraphError, ensemble_graph, one_pass_graph


def _run(model: onnx.ModelProto, silhouettes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(
        [OUTPUT_EMBEDDING], {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}
    )
    return np.asarray(out)


def _shifted(frames: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """numpy's reading of a one-pixel shift: zero pad, then the window at the shifted place."""
    height, width = frames.shape[-2:]
    padded = np.pad(frames, ((0, 0), (0, 0), (1, 1), (1, 1)))
    return padded[..., 1 - rows : 1 - rows + height, 1 - columns : 1 - columns + width]


def _meta(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


@pytest.fixture(scope="module")
def ensemble(tiny_onnx: Path) -> onnx.ModelProto:
    """The tiny export: the default set, ``cross``, built around one traced pass."""
    model = onnx.load(str(tiny_onnx))
    assert _meta(model)[TEST_TIME_SHIFTS_KEY] == "cross"
    return model


def test_the_graph_averages_the_one_pass_network_over_the_shifted_frames(
    ensemble: onnx.ModelProto,
) -> None:
    one = one_pass_graph(ensemble)
    assert _meta(one)[TEST_TIME_SHIFTS_KEY] == "none"
    rng = np.random.default_rng(3)
    silhouettes = np.zeros((2, 6, 64, 44), np.float32)
    silhouettes[:, :, 10:50, 12:30] = rng.random((2, 6, 40, 18)) > 0.3
    lengths = np.array([6, 4], np.int64)
    passes = [
        _run(one, np.ascontiguousarray(_shifted(silhouettes, r, c)), lengths)
        for r, c in TEST_TIME_SHIFT_OFFSETS["cross"]
    ]
    total = np.sum(passes, axis=0)
    expected = total / np.linalg.norm(total, axis=1, keepdims=True)
    got = _run(ensemble, silhouettes, lengths)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, passes[0], atol=1e-4)  # the shifts change the embedding


def test_the_passes_share_one_set_of_weights(ensemble: onnx.ModelProto) -> None:
    one = one_pass_graph(ensemble)
    weights = sum(init.ByteSize() for init in one.graph.initializer)
    assert sum(init.ByteSize() for init in ensemble.graph.initializer) < weights + 1024
    convs = sum(node.op_type == "Conv" for node in one.graph.node)
    assert sum(node.op_type == "Conv" for node in ensemble.graph.node) == 5 * convs


def test_taking_the_pass_out_and_wrapping_it_again_gives_the_same_model(
    ensemble: onnx.ModelProto,
) -> None:
    one = one_pass_graph(ensemble)
    onnx.checker.check_model(one)
    again = ensemble_graph(one, "cross")
    onnx.checker.check_model(again)
    assert [n.op_type for n in again.graph.node] == [n.op_type for n in ensemble.graph.node]
    assert _meta(again) == _meta(ensemble)
    assert ensemble_graph(one, "none").graph == one.graph  # one pass stays one pass
    assert one_pass_graph(one).graph == one.graph


def test_a_multi_pass_model_without_named_passes_is_refused(ensemble: onnx.ModelProto) -> None:
    """A five-pass export traced from PyTorch (before the ensemble was written in ONNX) has no
    ``pass0/`` nodes to take out: the error says to re-export, it does not guess."""
    traced = onnx.ModelProto()
    traced.CopyFrom(one_pass_graph(ensemble))
    for prop in traced.metadata_props:
        if prop.key == TEST_TIME_SHIFTS_KEY:
            prop.value = "cross"
    with pytest.raises(ShiftGraphError, match="re-export"):
        one_pass_graph(traced)


def test_graphs_the_copy_cannot_rename_are_refused(ensemble: onnx.ModelProto) -> None:
    one = one_pass_graph(ensemble)
    with pytest.raises(ShiftGraphError, match="already part of a shift ensemble"):
        ensemble_graph(ensemble, "cross")
    branch = helper.make_graph([], "branch", [], [])
    nested = onnx.ModelProto()
    nested.CopyFrom(one)
    nested.graph.node.append(
        helper.make_node("If", ["cond"], [], then_branch=branch, else_branch=branch)
    )
    with pytest.raises(ShiftGraphError, match="sub-graph"):
        ensemble_graph(nested, "cross")
