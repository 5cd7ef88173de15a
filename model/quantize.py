"""Static int8 quantisation (QDQ) of an exported gaitid model, calibrated on real walks.

Dynamic int8 quantises activations on the fly and lost to fp32 on this network (BENCHMARKS.md):
its cost is in 3-D convolutions, which dynamic quantisation leaves in float. Static
quantisation fixes every activation's scale ahead of time from calibration walks, so ONNX
Runtime can run the convolutions and matrix products as integer kernels (VNNI on CPUs that
have it). Choices, following ONNX Runtime's guidance for x86: QDQ format, unsigned 8-bit
activations with signed 8-bit per-channel weights (the U8S8 kernels), only ``Conv``,
``MatMul`` and ``Gemm`` quantised (the attention softmax, normalisation and pooling stay fp32),
and percentile calibration (99.999th) by default, which ignores the rare outlier activations
min/max would stretch the scale for. The method is a per-model choice, measured: the shipped
int8 file uses ``entropy``, which kept every condition within half a point of fp32 where
percentile lost 0.6 on CL (models/README.md, "Int8 model").

The result keeps the contract's metadata (so the service and ``gaitid eval`` load it like the
fp32 file), with ``precision`` set to ``int8`` and the calibration recorded. It is only worth
shipping if its accuracy stays within half a point of the fp32 model's (``gaitid eval``) and it
is faster on the serving CPU (``bench/model_latency.py --int8``); models/README.md says whether
the shipped one is.

A model that averages test-time shifts (``gaitid.model.shift_graph``) is quantised one pass
at a time: its unshifted pass is taken out, calibrated and quantised (calibrating the five-pass
graph held every intermediate tensor five times over and ran out of 24 GB), and the result is
wrapped in the same shift set, so the int8 file computes the fp32 file's function.

**7-bit weights by default** (``reduce_range``). On x86 CPUs without VNNI (AVX2 only, or
AVX-512 without VNNI) ONNX Runtime's U8S8 kernels multiply pairs of 8-bit values into 16-bit
sums that saturate (VNNI adds them in 32 bits): the shipped 8-bit-weight file gave
embeddings with a cosine of 0.744 (min 0.622) to the fp32 file's on 16 real walks on such a
CPU. Weights quantised to 7 bits keep those sums in range, so the file computes the same
integers on every x86 CPU (its re-quantisation: 0.994, min 0.990, on the same walks and CPU;
``bench/int8_agreement.py``, models/README.md "Int8 model").

torch-free: it needs ``onnx`` and ``onnxruntime`` only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from gaitid.contract import (
    INPUT_LENGTHS,
    INPUT_SILHOUETTES,
    PRECISION_KEY,
    QUANTIZATION_KEY,
    SEVEN_BIT_WEIGHTS,
    batch_sequences,
    read_metadata,
)
from gaitid.errors import GaitidError

CalibrationMethod = Literal["minmax", "percentile", "entropy"]
#: Operators given integer kernels; everything else stays fp32 between them.
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
#: Every calibration walk is fed at this length (about the walks the service sees): the
#: histogram calibrators stack each tensor across walks, so the shapes must agree.
CALIBRATION_FRAMES = 80


class QuantizeError(GaitidError, ValueError):
    """A model or calibration set that cannot be quantised."""


def fixed_length(walk: NDArray[np.uint8], frames: int) -> NDArray[np.uint8]:
    """The middle ``frames`` of a long walk, or a short one repeated cyclically to that length."""
    total = walk.shape[0]
    if total >= frames:
        start = (total - frames) // 2
        return walk[start : start + frames]
    return walk[np.arange(frames) % total]


def _feeds(walks: Sequence[NDArray[np.uint8]]) -> Iterator[dict[str, Any]]:
    for walk in walks:
        silhouettes, lengths = batch_sequences([fixed_length(walk, CALIBRATION_FRAMES)])
        yield {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}


def quantize_int8(
    src: Path,
    out: Path,
    walks: Sequence[NDArray[np.uint8]],
    *,
    method: CalibrationMethod = "percentile",
    per_channel: bool = True,
    reduce_range: bool = True,
    calibration_data: str = "",
) -> dict[str, str]:
    """Write the static int8 model of ``src`` to ``out``; returns its metadata.

    ``walks`` are pretreated ``(T, 64, 44)`` uint8 walks fed one at a time, each at
    :data:`CALIBRATION_FRAMES` frames, to calibrate the activation ranges (a few dozen
    suffice; they should look like what the service embeds). ``calibration_data`` says where
    they came from, for the metadata (no local paths). ``reduce_range`` quantises the
    weights to 7 bits (the module docstring says why); without it the file is only right on
    CPUs with VNNI.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization import CalibrationMethod as OrtMethod
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from gaitid.model.shift_graph import ensemble_graph, one_pass_graph

    if not walks:
        raise QuantizeError("calibration needs at least one walk")
    source = onnx.load(str(src))
    meta = {p.key: p.value for p in source.metadata_props}
    shifts = read_metadata(meta).test_time_shifts  # a gaitid model, or ContractError
    if meta.get(PRECISION_KEY) != "float32":
        raise QuantizeError(
            f"{src} has precision {meta.get(PRECISION_KEY)!r}; quantise a float32 export"
        )
    one_pass = one_pass_graph(source)  # ShiftGraphError (a ContractError) for an old export
    del source

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = _feeds(walks)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._feeds, None)

    ort_method = {
        "minmax": OrtMethod.MinMax,
        "percentile": OrtMethod.Percentile,
        "entropy": OrtMethod.Entropy,
    }[method]
    with tempfile.TemporaryDirectory(prefix="gaitid-quantize-") as tmp:
        unshifted = Path(tmp) / "one-pass.onnx"
        prepared = Path(tmp) / "prepared.onnx"
        quantized = Path(tmp) / "quantized.onnx"
        onnx.save(one_pass, str(unshifted))
        del one_pass
        # shape inference + graph cleanup that quantisation needs; dynamic T defeats the
        # symbolic pass, which is only needed for transformer-style shape patterns
        quant_pre_process(str(unshifted), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
            op_types_to_quantize=list(QUANTIZED_OPS),
            calibrate_method=ort_method,
            # no CalibMaxIntermediateOutputs: ONNX Runtime's minmax calibrator drops every
            # full chunk of that many walks without taking its ranges (1.32: only the last
            # partial chunk counted, and a multiple of it failed with "No data is collected");
            # the histogram methods ignore it and hold every walk's tensors either way
            extra_options={"CalibPercentile": 99.999},
        )
        # the passes share the quantised weights and the ranges calibrated on unshifted walks
        # (a one-pixel shift keeps every activation's range)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(ensemble_graph(onnx.load(str(quantized)), shifts), str(out))
    return rewrite_metadata(
        out,
        {
            **meta,
            PRECISION_KEY: "int8",
            QUANTIZATION_KEY: (
                f"static QDQ, U8 activations / {SEVEN_BIT_WEIGHTS if reduce_range else 'S8'} "
                f"{'per-channel' if per_channel else 'per-tensor'} weights, "
                f"{'/'.join(QUANTIZED_OPS)}, {method} calibration on {len(walks)} walks"
                + (f" of {calibration_data}" if calibration_data else "")
            ),
        },
    )


def rewrite_metadata(path: Path, meta: dict[str, str]) -> dict[str, str]:
    """Replace the metadata of the ONNX model at ``path`` with ``meta`` (checked against the
    contract first, so a file is never left with metadata the service would refuse)."""
    import onnx

    read_metadata(meta)
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return dict(meta)
