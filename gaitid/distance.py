"""Distances between gait features, shared by evaluation and serving.

Two ways to compare walks exist in this project: the paper's part-wise Euclidean distance
(mean over horizontal parts of the per-part Euclidean distance, OpenGait's convention) and the
service's cosine similarity of 256-d L2-normalised embeddings.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def l2_normalize(
    x: NDArray[np.floating], axis: int = -1, eps: float = 1e-12
) -> NDArray[np.float32]:
    """Scale vectors to unit length along ``axis`` (zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return (x / np.maximum(norm, eps)).astype(np.float32)


def cosine_similarity(
    probe: NDArray[np.floating], gallery: NDArray[np.floating]
) -> NDArray[np.float32]:
    """``[N, D] x [M, D] -> [N, M]`` cosine similarity (higher is more alike)."""
    return (l2_normalize(probe) @ l2_normalize(gallery).T).astype(np.float32)


def part_wise_euclidean(
    probe: NDArray[np.floating], gallery: NDArray[np.floating]
) -> NDArray[np.float32]:
    """``[N, P, D] x [M, P, D] -> [N, M]`` mean over parts of the Euclidean distance per part.

    Computed part by part with the expansion |a-b|^2 = |a|^2 + |b|^2 - 2ab to keep memory at
    ``O(N*M)`` rather than ``O(N*M*D)``.
    """
    probe = np.asarray(probe, dtype=np.float32)
    gallery = np.asarray(gallery, dtype=np.float32)
    if probe.ndim != 3 or gallery.ndim != 3 or probe.shape[1:] != gallery.shape[1:]:
        raise ValueError(
            "part features must be [N, P, D] with equal P and D; "
            f"got {probe.shape} and {gallery.shape}"
        )
    total = np.zeros((probe.shape[0], gallery.shape[0]), dtype=np.float64)
    for p in range(probe.shape[1]):
        a, b = probe[:, p].astype(np.float64), gallery[:, p].astype(np.float64)
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        total += np.sqrt(np.maximum(sq, 0.0))
    return (total / probe.shape[1]).astype(np.float32)
