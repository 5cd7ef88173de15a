"""Static int8 quantisation: a runnable model that keeps the contract and tracks fp32."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from gaitid.cli import build_app
from gaitid.contract import (
    INPUT_LENGTHS,
    INPUT_SILHOUETTES,
    OUTPUT_EMBEDDING,
    batch_sequences,
    int8_weight_bits,
    read_metadata,
)
from gaitid.model.quantize import QuantizeError, quantize_int8, rewrite_metadata
from gaitid.model.shift_graph import one_pass_graph
from gaitid.preprocess import to_network_input
from gaitid.training.data.opengait import load_dataset
from tests.utils.cpu import pretend_cpu
from tests.utils.synthetic import make_synthetic_dataset


@pytest.fixture(scope="module")
def synthetic_walks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    root = make_synthetic_dataset(tmp_path_factory.mktemp("synth"), subjects=2, views=(0, 90))
    walks = load_dataset(root)
    return root, [to_network_input(walks[k]) for k in sorted(walks)]


def _embed(path: Path, walk: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    silhouettes, lengths = batch_sequences([walk])
    (out,) = session.run(
        [OUTPUT_EMBEDDING], {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}
    )
    return np.asarray(out[0])


def test_int8_model_keeps_the_contract_and_tracks_fp32(
    tiny_onnx: Path, synthetic_walks: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    _, walks = synthetic_walks
    out = tmp_path / "tiny.int8.onnx"
    meta = quantize_int8(tiny_onnx, out, walks[:6], method="minmax")
    proto = onnx.load(str(out))
    written = {p.key: p.value for p in proto.metadata_props}
    assert written == meta and written["precision"] == "int8"
    assert "minmax calibration on 6 walks" in written["quantization"]
    read_metadata(written)  # the service's check passes
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # the fp32 file's shift set, around one quantised pass the five share
    assert written["test_time_shifts"] == "cross"
    one = one_pass_graph(proto)
    convs = sum(node.op_type == "Conv" for node in one.graph.node)
    assert convs and sum(node.op_type == "Conv" for node in proto.graph.node) == 5 * convs
    assert "QuantizeLinear" in {node.op_type for node in one.graph.node}
    for walk in walks[6:9]:  # walks the calibration never saw
        fp32, int8 = _embed(tiny_onnx, walk), _embed(out, walk)
        assert int8.shape == (256,) and abs(float(np.linalg.norm(int8)) - 1.0) < 1e-4
        assert float(fp32 @ int8) > 0.9  # an approximation of the same model


def _largest_weight_magnitude(path: Path) -> int:
    """The largest |value| of the signed 8-bit initialisers (the quantised weights)."""
    proto = onnx.load(str(path))
    return max(
        int(np.abs(numpy_helper.to_array(init).astype(np.int16)).max())
        for init in proto.graph.initializer
        if init.data_type == onnx.TensorProto.INT8 and init.dims
    )


def test_weights_are_7_bit_by_default_so_cpus_without_vnni_do_not_saturate(
    tiny_onnx: Path, synthetic_walks: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    # without VNNI, ONNX Runtime sums pairs of u8 x s8 products in 16 bits: 8-bit weights
    # saturate them (the shipped 8-bit file's cosine to fp32 fell to 0.74 on such a CPU)
    _, walks = synthetic_walks
    reduced, full = tmp_path / "reduced.onnx", tmp_path / "full.onnx"
    meta = quantize_int8(tiny_onnx, reduced, walks[:3], method="minmax")
    full_meta = quantize_int8(tiny_onnx, full, walks[:3], method="minmax", reduce_range=False)
    assert "7-bit per-channel weights" in meta["quantization"]
    # what the service reads to refuse a file this CPU would saturate
    assert int8_weight_bits(meta) == 7 and int8_weight_bits(full_meta) == 8
    assert _largest_weight_magnitude(reduced) <= 64 < _largest_weight_magnitude(full)


def test_minmax_calibrates_on_every_walk(
    tiny_onnx: Path, synthetic_walks: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    # ONNX Runtime's minmax calibrator, given CalibMaxIntermediateOutputs, dropped each full
    # chunk unread: 4 walks with chunks of 4 left none ("No data is collected")
    _, walks = synthetic_walks
    quantize_int8(tiny_onnx, tmp_path / "four.onnx", walks[:4], method="minmax")
    five, last = tmp_path / "five.onnx", tmp_path / "last.onnx"
    quantize_int8(tiny_onnx, five, walks[:5], method="minmax")
    quantize_int8(tiny_onnx, last, walks[4:5], method="minmax")
    assert _activation_scales(five) != _activation_scales(last)  # not the last walk alone


def _activation_scales(path: Path) -> dict[str, float]:
    """The scalar float initialisers of a QDQ file: its activations' scales."""
    proto = onnx.load(str(path))
    return {
        init.name: float(numpy_helper.to_array(init))
        for init in proto.graph.initializer
        if init.data_type == onnx.TensorProto.FLOAT and not init.dims
    }


def test_quantize_refuses_no_walks_and_a_model_already_quantised(
    tiny_onnx: Path, synthetic_walks: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    _, walks = synthetic_walks
    with pytest.raises(QuantizeError, match="at least one walk"):
        quantize_int8(tiny_onnx, tmp_path / "a.onnx", [])
    once = tmp_path / "once.onnx"
    quantize_int8(tiny_onnx, once, walks[:2], method="minmax")
    with pytest.raises(QuantizeError, match="float32"):
        quantize_int8(once, tmp_path / "twice.onnx", walks[:2])


def test_cli_quantizes_on_chosen_training_subjects(
    tiny_onnx: Path, synthetic_walks: tuple[Path, list[np.ndarray]], tmp_path: Path
) -> None:
    root, _ = synthetic_walks
    model = shutil.copy(tiny_onnx, tmp_path / "m.onnx")
    out = tmp_path / "m.int8.onnx"
    args = ["quantize", str(model), "--out", str(out), "--data", str(root), "--walks", "4"]
    result = CliRunner().invoke(build_app(), [*args, "--subjects", "001"])
    assert result.exit_code == 0, result.output
    assert "percentile calibration on 4 walks of synth0, subjects 001" in result.output
    result = CliRunner().invoke(build_app(), [*args, "--subjects", "009"])
    assert result.exit_code == 2 and "no walks" in result.output
    result = CliRunner().invoke(build_app(), [*args, "--method", "guess"])
    assert result.exit_code != 0 and "unknown method" in result.output
    result = CliRunner().invoke(build_app(), [*args, "--cache", str(tmp_path / "cache")])
    assert result.exit_code != 0 and "--threshold-subjects" in result.output


def test_cli_carries_the_threshold_shifted_by_what_int8_moves(
    tiny_onnx: Path, tmp_path: Path
) -> None:
    conditions = ("nm-01", "nm-02", "nm-05", "bg-01")  # gallery and probe walks
    root = make_synthetic_dataset(
        tmp_path / "data", subjects=3, views=(0, 90), conditions=conditions
    )
    model = Path(shutil.copy(tiny_onnx, tmp_path / "m.onnx"))
    out = tmp_path / "m.int8.onnx"
    args = ["quantize", str(model), "--out", str(out), "--data", str(root), "--walks", "4"]
    args += ["--threshold-subjects", "001-003", "--target-fmr", "0.1"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 2 and "no default_threshold" in result.output
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    clip = {"clip_threshold": "0.300000", "clip_threshold_calibration": '{"target_fmr": 0.01}'}
    rewrite_metadata(model, {**meta, "default_threshold": "0.400000", **clip})
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 0, result.output
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    written = read_metadata(meta)
    how = json.loads(meta["threshold_calibration"])
    assert how["transferred_from_float32"] == 0.4 and how["shift_measured_on"] == "subjects 001-003"
    assert how["shift"] == pytest.approx(
        how["derived_threshold_at_fmr"] - how["float32_threshold_at_fmr"], abs=2e-6
    )
    assert written.default_threshold == pytest.approx(0.4 + how["shift"], abs=2e-6)
    assert "0.4000 of the float32 model shifted by" in result.output
    # the camera-clip threshold moves by the same measured shift, its record kept inside
    clip_how = json.loads(meta["clip_threshold_calibration"])
    assert clip_how["transferred_from_float32"] == 0.3 and clip_how["shift"] == how["shift"]
    assert clip_how["float32_calibration"] == {"target_fmr": 0.01}
    assert written.clip_threshold == pytest.approx(0.3 + how["shift"], abs=2e-6)
    assert "clip_threshold" in result.output and "0.3000 of the float32 model" in result.output


def test_cli_does_not_measure_8bit_weights_on_a_cpu_that_saturates_them(
    tiny_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pretend_cpu(monkeypatch, tmp_path, "fpu avx2")
    root = make_synthetic_dataset(tmp_path / "data", subjects=2, views=(0, 90))
    model = Path(shutil.copy(tiny_onnx, tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    rewrite_metadata(model, {**meta, "default_threshold": "0.400000"})
    args = ["quantize", str(model), "--out", str(tmp_path / "o.onnx"), "--data", str(root)]
    args += ["--walks", "2", "--threshold-subjects", "001-002", "--full-range"]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 2 and "without VNNI" in result.output
