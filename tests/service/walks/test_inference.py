"""Embedder: contract and metadata checks at load time, batched inference at run time.

Most tests run small hand-built ONNX graphs (``write_contract_model``) so each contract
violation can be produced on purpose; one test runs the real random-init tiny LMGCS export.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gaitid.contract import EMBEDDING_DIM, FRAME_HEIGHT, FRAME_WIDTH
from gaitid.errors import InvalidSequenceError
from gaitid.service.walks.inference import (
    Embedder,
    InferenceError,
    ModelLoadError,
    session_options,
)

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

BASE_METADATA = {
    "model_name": "contract-test",
    "variant": "mean-frame",
    "version": "0.0.1",
    "embedding_dim": str(EMBEDDING_DIM),
    "input_size": f"{FRAME_HEIGHT}x{FRAME_WIDTH}",
    "metric": "cosine",
    "training_data": "none",
}


def write_contract_model(
    path: Path,
    *,
    seed: int = 0,
    metadata: dict[str, str | None] | None = None,
    silhouettes_name: str = "silhouettes",
    silhouettes_shape: tuple[Any, ...] = ("N", "T", FRAME_HEIGHT, FRAME_WIDTH),
    lengths_type: int = TensorProto.INT64,
    output_shape: tuple[Any, ...] = ("N", EMBEDDING_DIM),
    out_dim: int = EMBEDDING_DIM,
    scale: float | None = None,
    extra_output: bool = False,
    hide_out_dim: bool = False,
) -> Path:
    """A tiny ONNX graph honouring (or, through the arguments, breaking) the contract.

    Network: the mean frame over the real frames (``sum / lengths``, so zero padding never
    changes it) -> flatten -> random projection -> L2 normalisation; with ``scale`` set the
    normalisation is replaced by a multiplication (to test non-unit, NaN and zero outputs).
    ``metadata`` entries update the valid defaults; ``None`` deletes a key. ``hide_out_dim``
    reshapes the output with a shape computed at run time, so its width is unknown at load.
    """
    rng = np.random.default_rng(seed)
    weights = (rng.standard_normal((FRAME_HEIGHT * FRAME_WIDTH, out_dim)) / 50).astype(np.float32)
    nodes = [
        helper.make_node("ReduceSum", [silhouettes_name, "time_axis"], ["summed"], keepdims=0),
        helper.make_node("Cast", ["lengths"], ["lengths_f"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["lengths_f", "shape_n11"], ["lengths_n11"]),
        helper.make_node("Div", ["summed", "lengths_n11"], ["mean_frame"]),
        helper.make_node("Reshape", ["mean_frame", "shape_flat"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weights"], ["projected"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1], np.int64), "time_axis"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape_n11"),
        numpy_helper.from_array(np.array([-1, FRAME_HEIGHT * FRAME_WIDTH], np.int64), "shape_flat"),
        numpy_helper.from_array(weights, "weights"),
    ]
    if hide_out_dim:
        nodes += [
            helper.make_node("Shape", ["lengths"], ["n"]),
            helper.make_node("Concat", ["n", "minus_one"], ["shape_n_any"], axis=0),
            helper.make_node("Reshape", ["projected", "shape_n_any"], ["reshaped"]),
        ]
        initializers.append(numpy_helper.from_array(np.array([-1], np.int64), "minus_one"))
        nodes.append(helper.make_node("Identity", ["reshaped"], ["embedding"]))
    elif scale is None:
        nodes.append(helper.make_node("LpNormalization", ["projected"], ["embedding"], axis=1, p=2))
    else:
        initializers.append(numpy_helper.from_array(np.array(scale, np.float32), "scale"))
        nodes.append(helper.make_node("Mul", ["projected", "scale"], ["embedding"]))
    outputs = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, list(output_shape))]
    if extra_output:
        outputs.append(
            helper.make_tensor_value_info("projected", TensorProto.FLOAT, ["N", out_dim])
        )
    graph = helper.make_graph(
        nodes,
        "contract_test",
        [
            helper.make_tensor_value_info(
                silhouettes_name, TensorProto.FLOAT, list(silhouettes_shape)
            ),
            helper.make_tensor_value_info("lengths", lengths_type, ["N"]),
        ],
        outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = dict(BASE_METADATA)
    for key, value in (metadata or {}).items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    helper.set_model_props(model, props)
    onnx.save(model, str(path))
    return path


def walks(rng: np.random.Generator, lengths: list[int]) -> list[np.ndarray]:
    """Random binary silhouette walks, uint8 (T, 64, 44) in {0, 255}."""
    return [
        ((rng.random((t, FRAME_HEIGHT, FRAME_WIDTH)) > 0.6) * 255).astype(np.uint8) for t in lengths
    ]


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return write_contract_model(tmp_path / "model.onnx")


def test_loads_valid_model_and_reports_metadata(model_path: Path) -> None:
    embedder = Embedder(model_path, device="cpu", intra_op_threads=1)
    info = embedder.info
    assert (info.name, info.variant, info.version) == ("contract-test", "mean-frame", "0.0.1")
    assert info.embedding_dim == EMBEDDING_DIM and info.metric == "cosine"
    assert info.input_size == "64x44" and info.training_data == "none"
    assert info.default_threshold is None
    assert info.sha256 == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert embedder.providers == ["CPUExecutionProvider"]


def test_auto_device_uses_what_onnxruntime_offers(model_path: Path) -> None:
    import onnxruntime as ort

    embedder = Embedder(model_path)
    assert embedder.providers[-1] == "CPUExecutionProvider"
    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    assert ("CUDAExecutionProvider" in embedder.providers) == cuda


def test_embeddings_are_unit_and_independent_of_batch_mates(
    model_path: Path, rng: np.random.Generator
) -> None:
    embedder = Embedder(model_path, device="cpu")
    sequences = walks(rng, [1, 7, 30, 3])
    batched = embedder.embed_batch(sequences)
    assert batched.shape == (4, EMBEDDING_DIM) and batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    alone = np.concatenate([embedder.embed_batch([s]) for s in sequences])
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert embedder.embed_batch([]).shape == (0, EMBEDDING_DIM)


def test_real_tiny_lmgcs_export_runs(tmp_path: Path, rng: np.random.Generator) -> None:
    """The model engineer's random-init tiny export satisfies every check of the loader."""
    from tests.utils.onnx_models import export_tiny_onnx

    embedder = Embedder(export_tiny_onnx(tmp_path), device="cpu")
    assert embedder.info.name and embedder.info.version and embedder.info.variant
    sequences = walks(rng, [5, 40])
    batched = embedder.embed_batch(sequences)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    alone = np.concatenate([embedder.embed_batch([s]) for s in sequences])
    np.testing.assert_allclose(batched, alone, atol=1e-5)


@pytest.mark.parametrize(
    ("sequence", "message"),
    [
        (np.zeros((5, 64, 44), np.float32), "dtype uint8; got float32"),
        (np.zeros((5, 64, 64), np.uint8), r"shape \(5, 64, 64\)"),
        (np.zeros((64, 44), np.uint8), r"shape \(64, 44\)"),
        (np.zeros((0, 64, 44), np.uint8), "no frames"),
        ([[0]], "numpy array; got list"),
    ],
)
def test_malformed_sequences_are_rejected(model_path: Path, sequence: Any, message: str) -> None:
    embedder = Embedder(model_path, device="cpu")
    with pytest.raises(InvalidSequenceError, match=message):
        embedder.embed_batch([np.zeros((3, 64, 44), np.uint8), sequence])


def test_missing_and_corrupt_files_fail_to_load(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        Embedder(tmp_path / "absent.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load it"):
        Embedder(garbage)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"silhouettes_name": "frames"}, r"graph inputs \['frames', 'lengths'\]"),
        ({"lengths_type": TensorProto.INT32}, "'lengths' has type tensor\\(int32\\)"),
        ({"silhouettes_shape": (1, "T", 64, 44)}, "axis 0 is fixed to 1; it must be dynamic"),
        ({"silhouettes_shape": ("N", 30, 64, 44)}, "axis 1 is fixed to 30"),
        ({"silhouettes_shape": ("N", "T", 64, 64)}, "axis 3 is 64; the contract needs 44"),
        ({"silhouettes_shape": ("N", 64, 44)}, "expected rank 4"),
        ({"extra_output": True}, "expected only \\['embedding'\\]"),
        ({"out_dim": 128, "output_shape": ("N", 128)}, "axis 1 is 128; the contract needs 256"),
        (
            {"out_dim": 128, "output_shape": ("N", "D"), "hide_out_dim": True},
            r"shape \(2, 128\) for a batch of 2",
        ),
        ({"metadata": {"version": None}}, r"lacks \['version'\]"),
        ({"metadata": {"embedding_dim": "128"}}, "embedding_dim=128; .* needs 256"),
        ({"metadata": {"embedding_dim": "many"}}, "'many' is not an integer"),
        ({"metadata": {"metric": "euclidean"}}, "metric='euclidean'"),
        ({"metadata": {"input_size": "64x64"}}, "input_size='64x64'"),
        ({"metadata": {"default_threshold": "high"}}, "default_threshold='high'"),
        ({"metadata": {"default_threshold": "1.5"}}, "default_threshold='1.5'"),
        ({"metadata": {"default_threshold": "nan"}}, "default_threshold='nan'"),
    ],
)
def test_contract_violations_fail_to_load_naming_the_problem(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    path = write_contract_model(tmp_path / "bad.onnx", **kwargs)
    with pytest.raises(ModelLoadError, match=message):
        Embedder(path, device="cpu")


def test_default_threshold_is_read_when_present(tmp_path: Path) -> None:
    path = write_contract_model(tmp_path / "m.onnx", metadata={"default_threshold": "0.62"})
    assert Embedder(path, device="cpu").info.default_threshold == pytest.approx(0.62)


@pytest.mark.parametrize(
    ("quantization", "flags", "loads"),
    [
        ("static QDQ, U8 activations / S8 per-channel weights", "fpu avx2 fma", False),
        (None, "fpu avx2 fma", False),  # another tool's int8 file: 8-bit unless it says so
        ("static QDQ, U8 activations / S8 7-bit per-channel weights", "fpu avx2 fma", True),
        ("static QDQ, U8 activations / S8 per-channel weights", "avx2 avx512_vnni", True),
    ],
)
def test_an_int8_file_this_cpu_would_saturate_fails_to_load(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    quantization: str | None,
    flags: str,
    loads: bool,
) -> None:
    from tests.utils.cpu import pretend_cpu

    pretend_cpu(monkeypatch, tmp_path, flags)
    path = write_contract_model(
        tmp_path / "int8.onnx", metadata={"precision": "int8", "quantization": quantization}
    )
    if loads:
        assert Embedder(path, device="cpu").info.version == "0.0.1"
    else:
        with pytest.raises(ModelLoadError, match=r"8-bit weights.*without VNNI"):
            Embedder(path, device="cpu")
    # a float file is never refused, whatever the CPU
    assert Embedder(write_contract_model(tmp_path / "fp32.onnx"), device="cpu")


def test_non_unit_outputs_are_normalised(tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_contract_model(tmp_path / "m.onnx", scale=7.5)
    out = Embedder(path, device="cpu").embed_batch(walks(rng, [4, 9]))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("scale", "message"), [(float("nan"), "NaN/inf"), (0.0, "zero")])
def test_unusable_outputs_raise_inference_error(
    tmp_path: Path, rng: np.random.Generator, scale: float, message: str
) -> None:
    embedder = Embedder(write_contract_model(tmp_path / "m.onnx", scale=scale), device="cpu")
    with pytest.raises(InferenceError, match=rf"{message} embeddings for walks \[0, 1\]"):
        embedder.embed_batch(walks(rng, [4, 9]))


def test_bad_options_are_rejected(model_path: Path) -> None:
    with pytest.raises(ValueError, match="device 'tpu' is not one of"):
        Embedder(model_path, device="tpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="intra_op_threads must be an integer >= 0"):
        Embedder(model_path, intra_op_threads=-1)


def test_sessions_run_without_the_memory_reuse_plan() -> None:
    """ONNX Runtime's reuse plan pinned buffers across a run of the five-pass model (958 MiB
    a 256-frame run, 1.9 GiB after two, against 250 without it: BENCHMARKS.md "Memory per
    process"); the service's ceiling rests on it being off, and threads that do not spin."""
    options = session_options(2, 1)
    assert options.enable_mem_reuse is False
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_cuda_required_but_absent_fails(model_path: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime offers CUDA")
    with pytest.raises(ModelLoadError, match="device='cuda' but onnxruntime offers only"):
        Embedder(model_path, device="cuda")


@pytest.mark.gpu
def test_cuda_matches_cpu(model_path: Path, rng: np.random.Generator) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider")
    sequences = walks(rng, [3, 20])
    gpu = Embedder(model_path, device="cuda")
    assert gpu.providers[0] == "CUDAExecutionProvider"
    cpu = Embedder(model_path, device="cpu")
    np.testing.assert_allclose(gpu.embed_batch(sequences), cpu.embed_batch(sequences), atol=1e-4)
