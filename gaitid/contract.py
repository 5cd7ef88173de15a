"""The ONNX input/output contract between the trained network and the service.

Training exports a graph with exactly these names and shapes; the service feeds it and reads
it back through this module only, so the two sides cannot drift apart.

- input ``silhouettes``: float32 ``[N, T, 64, 44]`` in [0, 1]; walks shorter than ``T`` are
  zero-padded at the end.
- input ``lengths``: int64 ``[N]``, the number of real frames of each walk (>= 1).
- output ``embedding``: float32 ``[N, 256]``, L2-normalised, compared by inner product.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
from numpy.typing import NDArray

INPUT_SILHOUETTES: Final = "silhouettes"
INPUT_LENGTHS: Final = "lengths"
OUTPUT_EMBEDDING: Final = "embedding"

FRAME_HEIGHT: Final = 64
FRAME_WIDTH: Final = 44
EMBEDDING_DIM: Final = 256

#: Metric the embedding is compared with: cosine similarity == inner product of unit vectors.
METRIC: Final = "cosine"

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
