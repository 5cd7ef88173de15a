"""Embedding silhouette walks with an ONNX model through ONNX Runtime (never torch).

The service runs any ONNX file that honours :mod:`gaitid.contract`: inputs ``silhouettes``
float32 ``[N, T, 64, 44]`` and ``lengths`` int64 ``[N]`` with dynamic ``N`` and ``T``, one output
``embedding`` float32 ``[N, 256]``, and the metadata keys of ``gaitid.contract.METADATA_KEYS``
(plus optional ``default_threshold`` and ``clip_threshold``). :class:`Embedder` checks all of
that when it loads the file, so a wrong model fails at startup with a :class:`ModelLoadError`
naming the mismatch instead of returning garbage scores later; so does an int8 file whose
8-bit weights this CPU's integer kernels would saturate (x86 without VNNI).

Execution provider: ``device="auto"`` uses CUDA when this onnxruntime build offers it and the
provider actually initialises, else the CPU; ``"cuda"`` insists on CUDA. Graph optimisation is
``ORT_ENABLE_ALL``. Intra-op worker threads do not spin while idle: the same cores serve the
event loop and FAISS, and a spinning pool would steal them between requests.

Outputs are checked (shape, finite, non-zero) and L2-normalised again, since the index compares
by inner product and a model that forgot its final normalisation would skew every score.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from gaitid.contract import (
    EMBEDDING_DIM,
    FRAME_HEIGHT,
    FRAME_WIDTH,
    INPUT_LENGTHS,
    INPUT_SILHOUETTES,
    OUTPUT_EMBEDDING,
    ContractError,
    ContractMetadata,
    batch_sequences,
    read_metadata,
)
from gaitid.cpu import int8_kernel_problem
from gaitid.distance import l2_normalize
from gaitid.errors import GaitidError, InvalidSequenceError

if TYPE_CHECKING:
    import onnxruntime as ort

logger = logging.getLogger(__name__)

Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[Device, ...] = ("auto", "cpu", "cuda")

#: Optional metadata key: the cosine threshold calibrated for this model.

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
#: An embedding with a smaller norm than this is treated as a failed inference.
_MIN_NORM = 1e-6


class ModelLoadError(GaitidError):
    """The ONNX file is missing, unreadable, or does not honour the gaitid contract."""


class InferenceError(GaitidError):
    """ONNX Runtime failed, or returned embeddings that are not usable (wrong shape, NaN, zero)."""


@dataclass(frozen=True)
class ModelInfo(ContractMetadata):
    """What the service reports about its model: the checked ONNX ``metadata_props``, and
    the sha256 of the model file, so two files with one version string are told apart."""

    sha256: str = field(kw_only=True)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sequence(sequence: NDArray[np.uint8], *, what: str = "sequence") -> None:
    """Raise :class:`InvalidSequenceError` unless ``sequence`` is uint8 ``(T>=1, 64, 44)``.

    Checked per request before batching, so one bad walk never fails the others in its batch.
    """
    if not isinstance(sequence, np.ndarray):
        raise InvalidSequenceError(f"{what} must be a numpy array; got {type(sequence).__name__}")
    if sequence.dtype != np.uint8:
        raise InvalidSequenceError(f"{what} must have dtype uint8; got {sequence.dtype}")
    if sequence.ndim != 3 or sequence.shape[1:] != (FRAME_HEIGHT, FRAME_WIDTH):
        raise InvalidSequenceError(
            f"{what} has shape {sequence.shape}; expected (T, {FRAME_HEIGHT}, {FRAME_WIDTH})"
        )
    if sequence.shape[0] < 1:
        raise InvalidSequenceError(f"{what} has no frames; at least one is needed")


def _ort_errors() -> tuple[type[BaseException], ...]:
    """Exception types onnxruntime raises (its pybind errors share no base but Exception)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoSuchFile",
        "NoModel",
        "NotImplemented",
        "RuntimeException",
        "EPFail",
        "ModelLoaded",
    )
    found = tuple(getattr(state, n) for n in names if hasattr(state, n))
    return (*found, RuntimeError, ValueError, OSError)


def _read_model_info(meta: dict[str, str], sha256: str, path: Path) -> ModelInfo:
    """Validate the ONNX metadata against the contract and turn it into :class:`ModelInfo`."""
    try:
        checked = read_metadata(meta)
    except ContractError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    return ModelInfo(**asdict(checked), sha256=sha256)


def _check_graph(session: Any, path: Path) -> None:
    """Check input/output names, element types and static dims against the contract."""
    inputs = {arg.name: arg for arg in session.get_inputs()}
    outputs = {arg.name: arg for arg in session.get_outputs()}
    want_in = {INPUT_SILHOUETTES, INPUT_LENGTHS}
    if set(inputs) != want_in:
        raise ModelLoadError(f"{path}: graph inputs {sorted(inputs)}; expected {sorted(want_in)}")
    if set(outputs) != {OUTPUT_EMBEDDING}:
        raise ModelLoadError(
            f"{path}: graph outputs {sorted(outputs)}; expected only [{OUTPUT_EMBEDDING!r}]"
        )
    # (name, element type, expected dims: int = fixed, None = must be dynamic)
    specs: tuple[tuple[Any, str, tuple[int | None, ...]], ...] = (
        (inputs[INPUT_SILHOUETTES], "tensor(float)", (None, None, FRAME_HEIGHT, FRAME_WIDTH)),
        (inputs[INPUT_LENGTHS], "tensor(int64)", (None,)),
        (outputs[OUTPUT_EMBEDDING], "tensor(float)", (None, EMBEDDING_DIM)),
    )
    for arg, dtype, dims in specs:
        if arg.type != dtype:
            raise ModelLoadError(f"{path}: {arg.name!r} has type {arg.type}; expected {dtype}")
        shape = list(arg.shape)
        if len(shape) != len(dims):
            raise ModelLoadError(
                f"{path}: {arg.name!r} has shape {shape}; expected rank {len(dims)}"
            )
        for axis, (got, want) in enumerate(zip(shape, dims, strict=True)):
            if want is None and isinstance(got, int):
                raise ModelLoadError(
                    f"{path}: {arg.name!r} axis {axis} is fixed to {got}; it must be dynamic"
                )
            # a symbolic size where a fixed one is expected is checked on the warm-up run
            if want is not None and isinstance(got, int) and got != want:
                raise ModelLoadError(
                    f"{path}: {arg.name!r} axis {axis} is {got}; the contract needs {want}"
                )


def _check_int8_kernels(meta: dict[str, str], path: Path) -> None:
    """Refuse an int8 file whose 8-bit weights this CPU's integer kernels would saturate: it
    would load and answer, with embeddings that are no longer the model's (a silent wrong
    matcher, worse than no service)."""
    if (problem := int8_kernel_problem(meta)) is not None:
        raise ModelLoadError(f"{path}: {problem}")


def _providers_for(device: Device, available: Sequence[str], path: Path) -> list[str]:
    if device == "cpu":
        return [_CPU]
    if _CUDA in available:
        return [_CUDA, _CPU]
    if device == "cuda":
        raise ModelLoadError(
            f"{path}: device='cuda' but onnxruntime offers only {list(available)} "
            "(install onnxruntime-gpu, or use device='auto')"
        )
    return [_CPU]


def session_options(intra_op_threads: int = 0, inter_op_threads: int = 0) -> ort.SessionOptions:
    """The ONNX Runtime session options the service runs a model with (benchmarks use them too).

    Why each: full graph optimisation (fused and NCHWc kernels); worker threads that do not
    spin, so an idle server leaves its cores alone; and no memory-reuse plan. ORT's planner
    lets a later tensor take over an earlier one's buffer, and with dynamic shapes that pins
    buffers across the whole run: on the shipped five-pass graph one 256-frame run grew the
    process by 958 MiB and a second by 900 more, against 194 and 243 MiB in all without the
    plan, at the same speed (BENCHMARKS.md, "Memory per process"). Freed tensors go back to
    the arena, which serves the next allocation.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.enable_mem_reuse = False
    options.log_severity_level = 3  # ORT warnings go to stderr unformatted; keep errors only
    return options


class Embedder:
    """An ONNX Runtime session that turns silhouette walks into unit 256-d embeddings.

    Thread-safe: ONNX Runtime allows concurrent ``run`` calls on one session.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        device: Device = "auto",
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        if device not in DEVICES:
            raise ValueError(f"device {device!r} is not one of {DEVICES}")
        for name, value in (
            ("intra_op_threads", intra_op_threads),
            ("inter_op_threads", inter_op_threads),
        ):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (0 = ORT default); got {value!r}")
        path = Path(model_path).expanduser().resolve()
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist (set GAITID_MODEL_PATH)")
        self.model_path = path

        options = session_options(intra_op_threads, inter_op_threads)
        wanted = _providers_for(device, ort.get_available_providers(), path)
        try:
            self._session = ort.InferenceSession(str(path), options, providers=wanted)
        except _ort_errors() as exc:
            raise ModelLoadError(f"{path}: onnxruntime cannot load it: {exc}") from exc
        self.providers: list[str] = list(self._session.get_providers())
        if device == "cuda" and _CUDA not in self.providers:
            raise ModelLoadError(
                f"{path}: device='cuda' but the CUDA provider failed to start "
                f"(session runs on {self.providers}); check the CUDA/cuDNN libraries"
            )
        if _CUDA in wanted and _CUDA not in self.providers:
            logger.warning("CUDA provider unavailable at runtime; running %s on the CPU", path)

        _check_graph(self._session, path)
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        self.info = _read_model_info(meta, file_sha256(path), path)
        if _CUDA not in self.providers:
            _check_int8_kernels(meta, path)
        self._warm_up(path)
        logger.info(
            "loaded model %s %s (%s) from %s on %s",
            self.info.name,
            self.info.version,
            self.info.variant,
            path,
            self.providers,
        )

    def _warm_up(self, path: Path) -> None:
        """One tiny run at load: checks the real output shape and pays the first-run cost."""
        blank = np.zeros((2, FRAME_HEIGHT, FRAME_WIDTH), np.uint8)
        silhouettes, lengths = batch_sequences([blank, blank[:1]])
        try:
            out = self._run(silhouettes, lengths)
        except InferenceError as exc:
            raise ModelLoadError(f"{path}: warm-up inference failed: {exc}") from exc
        if out.shape != (2, EMBEDDING_DIM):
            raise ModelLoadError(
                f"{path}: output {OUTPUT_EMBEDDING!r} has shape {out.shape} for a batch of 2; "
                f"expected (2, {EMBEDDING_DIM})"
            )

    def _run(self, silhouettes: NDArray[np.float32], lengths: NDArray[np.int64]) -> NDArray[Any]:
        feeds = {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}
        try:
            (out,) = self._session.run([OUTPUT_EMBEDDING], feeds)
        except _ort_errors() as exc:
            raise InferenceError(
                f"onnxruntime failed on a batch of shape {silhouettes.shape}: {exc}"
            ) from exc
        return np.asarray(out)

    def embed_batch(self, sequences: Sequence[NDArray[np.uint8]]) -> NDArray[np.float32]:
        """Embed walks of any lengths in one run: uint8 ``(T_i, 64, 44)`` -> ``[N, 256]`` unit rows.

        Walks are zero-padded to the longest; the model masks padding with ``lengths``.
        """
        if not len(sequences):
            return np.empty((0, EMBEDDING_DIM), np.float32)
        for i, seq in enumerate(sequences):
            check_sequence(seq, what=f"sequence {i}")
        silhouettes, lengths = batch_sequences(sequences)
        out = self._run(silhouettes, lengths)
        if out.shape != (len(sequences), EMBEDDING_DIM):
            raise InferenceError(
                f"model returned shape {out.shape} for {len(sequences)} walks; "
                f"expected ({len(sequences)}, {EMBEDDING_DIM})"
            )
        if not np.isfinite(out).all():
            bad = np.flatnonzero(~np.isfinite(out).all(axis=1)).tolist()
            raise InferenceError(f"model returned NaN/inf embeddings for walks {bad}")
        norms = np.linalg.norm(out.astype(np.float64), axis=1)
        if (norms < _MIN_NORM).any():
            bad = np.flatnonzero(norms < _MIN_NORM).tolist()
            raise InferenceError(f"model returned zero embeddings for walks {bad}")
        return l2_normalize(out)
