"""The ONNX input/output contract between the trained network and the service.

Training exports a graph with exactly these names and shapes; the service feeds it and reads
it back through this module only, so the two sides cannot drift apart.

- input ``silhouettes``: float32 ``[N, T, 64, 44]`` in [0, 1]; walks shorter than ``T`` are
  zero-padded at the end.
- input ``lengths``: int64 ``[N]``, the number of real frames of each walk (>= 1).
- output ``embedding``: float32 ``[N, 256]``, L2-normalised, compared by inner product.

A walk longer than the service's ``max_embed_frames`` is embedded in chunks
(:func:`split_walk`) whose embeddings are averaged and re-normalised (:func:`merge_embeddings`):
the network's memory grows faster than linearly with the frames it sees at once (the
shipped ``lite`` needs about 0.3 GB for 256 frames and 3 GB for 1000), so this bounds it.
Walks of CASIA-B length (60-150 frames) are always embedded whole.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, cast

import numpy as np
from numpy.typing import NDArray

from gaitid.distance import l2_normalize
from gaitid.errors import GaitidError

INPUT_SILHOUETTES: Final = "silhouettes"
INPUT_LENGTHS: Final = "lengths"
OUTPUT_EMBEDDING: Final = "embedding"

FRAME_HEIGHT: Final = 64
FRAME_WIDTH: Final = 44
EMBEDDING_DIM: Final = 256

#: Metric the embedding is compared with: cosine similarity == inner product of unit vectors.
METRIC: Final = "cosine"

#: ``model_name`` of every exported gaitid model.
MODEL_NAME: Final = "lmgcs"
#: Metadata the exporting caller must give (the rest is derived from the contract).
CALLER_METADATA: Final = ("variant", "version", "training_data")
#: Optional metadata: the calibrated cosine decision threshold (``gaitid export
#: --threshold-from``), which the service uses when a request and its gallery give none.
DEFAULT_THRESHOLD_KEY: Final = "default_threshold"
#: Its provenance record (JSON): what it was calibrated on, or how ``gaitid quantize`` moved it.
DEFAULT_THRESHOLD_CALIBRATION_KEY: Final = "threshold_calibration"
#: Optional metadata: the cosine threshold for walks segmented from camera footage (``gaitid
#: export --clip-threshold-from``): the default moved by how the clip route moves impostor
#: scores on the same held-out walks, so clips keep the calibrated false-match rate; a model
#: without it holds clip walks to ``default_threshold``.
CLIP_THRESHOLD_KEY: Final = "clip_threshold"
#: Its provenance record (JSON), as for the default threshold.
CLIP_THRESHOLD_CALIBRATION_KEY: Final = "clip_threshold_calibration"
#: Optional metadata: the test-time shift set the graph averages a walk's embedding over
#: (``gaitid.model.test_time``): ``none`` (one pass) or ``cross`` (the frames as they are and
#: moved by one pixel each way, five passes). Absent in exports older than the key: ``none``.
TEST_TIME_SHIFTS_KEY: Final = "test_time_shifts"
#: The shift sets a model can name.
TestTimeShifts: TypeAlias = Literal["none", "cross"]
TEST_TIME_SHIFT_SETS: Final[tuple[TestTimeShifts, ...]] = ("none", "cross")
#: ``(rows, columns)`` offsets of each set, the unshifted pass first (a positive offset moves
#: the frame down/right): the one table both the PyTorch evaluation
#: (``gaitid.model.test_time``) and the ONNX graph (``gaitid.model.shift_graph``) apply.
TEST_TIME_SHIFT_OFFSETS: Final[dict[TestTimeShifts, tuple[tuple[int, int], ...]]] = {
    "none": ((0, 0),),
    "cross": ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)),
}
#: The set exports and evaluations use unless told otherwise (the shipped model's).
DEFAULT_TEST_TIME_SHIFTS: Final[TestTimeShifts] = "cross"
#: The optional threshold keys with their provenance keys; export and quantise carry them.
THRESHOLD_KEYS: Final = (
    (DEFAULT_THRESHOLD_KEY, DEFAULT_THRESHOLD_CALIBRATION_KEY),
    (CLIP_THRESHOLD_KEY, CLIP_THRESHOLD_CALIBRATION_KEY),
)

#: Optional metadata: ``float32``, ``float16`` or ``int8`` (``gaitid quantize``).
PRECISION_KEY: Final = "precision"
#: Optional metadata of an int8 file: how it was quantised, in words (``gaitid quantize``).
QUANTIZATION_KEY: Final = "quantization"
#: What that description says of weights quantised to 7 bits ("S8 7-bit per-channel
#: weights"): their pairs of products cannot saturate the 16-bit sums of x86 CPUs without VNNI.
SEVEN_BIT_WEIGHTS: Final = "S8 7-bit"

#: Keys of the ONNX ``metadata_props`` every exported model carries.
METADATA_KEYS: Final = (
    "model_name",
    "variant",
    "version",
    "embedding_dim",
    "input_size",
    "metric",
    "training_data",
)


def batch_sequences(
    sequences: Sequence[NDArray[np.uint8]],
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Pad uint8 ``(T_i, 64, 44)`` walks into the network's ``silhouettes`` and ``lengths``.

    Padding goes at the end of time with zeros; the network masks it out using ``lengths``,
    so a walk gets the same embedding alone or in a mixed-length batch.
    """
    if not sequences:
        raise ValueError("batch_sequences needs at least one sequence")
    for i, seq in enumerate(sequences):
        if seq.ndim != 3 or seq.shape[1:] != (FRAME_HEIGHT, FRAME_WIDTH) or seq.shape[0] < 1:
            raise ValueError(
                f"sequence {i} has shape {seq.shape}; "
                f"expected (T>=1, {FRAME_HEIGHT}, {FRAME_WIDTH})"
            )
    lengths = np.array([s.shape[0] for s in sequences], dtype=np.int64)
    batch = np.zeros((len(sequences), int(lengths.max()), FRAME_HEIGHT, FRAME_WIDTH), np.float32)
    for i, seq in enumerate(sequences):
        # uint8 0..255 -> float32 0..1, the scaling used in training (OpenGait convention)
        batch[i, : seq.shape[0]] = seq.astype(np.float32) / 255.0
    return batch, lengths


def split_walk(frames: NDArray[np.uint8], max_frames: int) -> list[NDArray[np.uint8]]:
    """``(T, 64, 44)`` -> consecutive chunks of at most ``max_frames``, as equal as possible.

    Equal chunks (not ``max_frames`` and a short remainder) so that every chunk carries
    several gait cycles. A walk of at most ``max_frames`` frames is returned whole.
    """
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1; got {max_frames}")
    total = int(frames.shape[0])
    pieces = -(-total // max_frames)  # ceil
    if pieces <= 1:
        return [frames]
    bounds = np.linspace(0, total, pieces + 1).round().astype(int)
    return [frames[start:end] for start, end in itertools.pairwise(bounds)]


def merge_embeddings(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """Unit embeddings of one walk's chunks ``[K, 256]`` -> the walk's unit embedding."""
    if vectors.ndim != 2 or vectors.shape[0] < 1:
        raise ValueError(f"expected [K>=1, D] embeddings; got shape {vectors.shape}")
    if vectors.shape[0] == 1:
        return vectors[0]
    return l2_normalize(vectors.mean(axis=0, dtype=np.float64).astype(np.float32)[None])[0]


class ContractError(GaitidError, ValueError):
    """ONNX metadata that is missing keys or contradicts the contract."""


def shift_offsets(shifts: str) -> tuple[tuple[int, int], ...]:
    """The ``(rows, columns)`` offsets of a named test-time shift set; a
    :class:`ContractError` naming the known sets otherwise."""
    if shifts not in TEST_TIME_SHIFT_OFFSETS:
        raise ContractError(
            f"unknown test-time shift set {shifts!r}; one of {', '.join(TEST_TIME_SHIFT_SETS)}"
        )
    return TEST_TIME_SHIFT_OFFSETS[shifts]


def build_metadata(
    metadata: Mapping[str, str], *, model_config_json: str, fp16: bool
) -> dict[str, str]:
    """The ``metadata_props`` of an export: the caller's keys completed with the contract's.

    Raises :class:`ContractError` naming missing keys or values that contradict the contract.
    """
    missing = [key for key in CALLER_METADATA if not metadata.get(key)]
    if missing:
        raise ContractError(f"export metadata lacks {missing}; required: {list(CALLER_METADATA)}")
    derived = {
        "model_name": MODEL_NAME,
        "embedding_dim": str(EMBEDDING_DIM),
        "input_size": f"{FRAME_HEIGHT}x{FRAME_WIDTH}",
        "metric": METRIC,
    }
    for key, value in derived.items():
        if key in metadata and metadata[key] != value and key != "model_name":
            raise ContractError(
                f"metadata {key}={metadata[key]!r} contradicts the contract {value!r}"
            )
    props = {**derived, **{k: str(v) for k, v in metadata.items()}}
    props.setdefault(PRECISION_KEY, "float16" if fp16 else "float32")
    props.setdefault("model_config", model_config_json)
    read_metadata(props)  # what is written must read back
    return props


@dataclass(frozen=True)
class ContractMetadata:
    """What a model's metadata says, once checked against the contract."""

    name: str
    variant: str
    version: str
    embedding_dim: int
    input_size: str
    metric: str
    training_data: str
    default_threshold: float | None
    clip_threshold: float | None
    test_time_shifts: TestTimeShifts = "none"


def _optional_threshold(meta: Mapping[str, str], key: str) -> float | None:
    """The cosine threshold stored under ``key``, ``None`` when absent; :class:`ContractError`
    when it is not a number in [-1, 1] (NaN included)."""
    if key not in meta:
        return None
    raw = meta[key]
    try:
        threshold = float(raw)
    except ValueError:
        threshold = math.nan
    if not -1.0 <= threshold <= 1.0:  # also rejects NaN
        raise ContractError(f"metadata {key}={raw!r}; a cosine threshold in [-1, 1]")
    return threshold


def int8_weight_bits(meta: Mapping[str, str]) -> int | None:
    """The bits of an int8 file's weights: 7 when its ``quantization`` says so, else 8 (an
    older ``gaitid quantize`` file, ``--full-range``, or another tool's, whose quantiser
    defaults to 8); ``None`` for a file that is not int8."""
    if meta.get(PRECISION_KEY) != "int8":
        return None
    return 7 if SEVEN_BIT_WEIGHTS in meta.get(QUANTIZATION_KEY, "") else 8


def read_metadata(meta: Mapping[str, str]) -> ContractMetadata:
    """Check an ONNX model's ``metadata_props`` against the contract (the service, and the
    evaluation of an ONNX file, read models only through this). Raises :class:`ContractError`."""
    missing = [k for k in METADATA_KEYS if k not in meta]
    if missing:
        raise ContractError(
            f"metadata_props lacks {missing}; a gaitid model carries {list(METADATA_KEYS)}"
        )
    try:
        dim = int(meta["embedding_dim"])
    except ValueError:
        raise ContractError(
            f"metadata embedding_dim={meta['embedding_dim']!r} is not an integer"
        ) from None
    if dim != EMBEDDING_DIM:
        raise ContractError(f"metadata embedding_dim={dim}; the contract needs {EMBEDDING_DIM}")
    if meta["metric"] != METRIC:
        raise ContractError(f"metadata metric={meta['metric']!r}; embeddings compare by {METRIC!r}")
    sizes = [int(v) for v in re.findall(r"\d+", meta["input_size"])]
    if sizes[-2:] != [FRAME_HEIGHT, FRAME_WIDTH]:
        raise ContractError(
            f"metadata input_size={meta['input_size']!r}; frames must be "
            f"{FRAME_HEIGHT}x{FRAME_WIDTH}"
        )
    shifts = meta.get(TEST_TIME_SHIFTS_KEY, "none")
    if shifts not in TEST_TIME_SHIFT_SETS:
        raise ContractError(
            f"metadata {TEST_TIME_SHIFTS_KEY}={shifts!r}; one of {list(TEST_TIME_SHIFT_SETS)}"
        )
    return ContractMetadata(
        name=meta["model_name"],
        variant=meta["variant"],
        version=meta["version"],
        embedding_dim=dim,
        input_size=meta["input_size"],
        metric=meta["metric"],
        training_data=meta["training_data"],
        default_threshold=_optional_threshold(meta, DEFAULT_THRESHOLD_KEY),
        clip_threshold=_optional_threshold(meta, CLIP_THRESHOLD_KEY),
        test_time_shifts=cast(TestTimeShifts, shifts),
    )
