"""Fit the 256-d service embedding of a trained network: PCA + within-class whitening.

The network's part features ``[P, D]`` are compared by the paper with a part-wise Euclidean
distance; the service needs one 256-d vector per walk for cosine search (``gaitid.contract``).
``model.embedding_head.EmbeddingHead`` maps the part-normalised, concatenated features ``x``
(P*D values) to ``L2(W^T (x - mu))``; this module computes ``mu`` and ``W`` in closed form from
labelled training walks:

1. centre on the training mean ``mu`` and keep the top ``k = min(256, N - 1, P*D)`` principal
   directions ``V`` (through the N x N Gram matrix when N < P*D: the usual case, P*D is 12-25k);
2. within-class whitening (WCCN): with ``S_w`` the within-identity covariance of the projected
   walks, ``W = V S^{-1/2}`` for ``S = S_w + r * tr(S_w) / k * I``. The ridge ``r`` (default 1.0)
   keeps directions that the training identities never vary along from being blown up.

Why not learn ``W`` with a triplet loss (the first design): on the same trained `lite` network
the learned projection lost 7-14 rank-1 points against the part-wise distance, while this fit
beats it (``model/README.md``, "The 256-d service embedding"). Step 1 alone only ties with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from gaitid.errors import GaitidError

if TYPE_CHECKING:
    import torch

    from gaitid.model.ensemble import GaitNetwork

logger = logging.getLogger(__name__)

#: Relative eigenvalue below which a principal direction is numerically absent (dropped).
_RANK_TOLERANCE = 1e-10


class EmbeddingFitError(GaitidError, ValueError):
    """Training walks that cannot define a reduction (too few walks or identities)."""


@dataclass(frozen=True)
class Reduction:
    """A fitted ``x -> W^T (x - mean)`` (float32) and what it was fitted on."""

    mean: NDArray[np.float32]  # [F]
    weight: NDArray[np.float32]  # [F, out_dim]; columns past `pca_dims` are 0
    pca_dims: int  # principal directions kept (< out_dim only for tiny fits)
    explained_variance: float  # fraction of the centred variance the kept directions hold
    walks: int
    identities: int
    regularization: float


def principal_directions(
    centred: NDArray[np.float32], k: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Top-``k`` unit principal directions ``[F, k]`` of centred rows ``[N, F]``, their
    variances and the fraction of the total variance they hold.

    Through the N x N Gram matrix when N <= F (eigenvectors u of X X^T give the directions
    X^T u / sqrt(lambda)), else through the F x F covariance; directions whose eigenvalue is
    numerically zero are dropped, so fewer than ``k`` may come back.
    """
    n, f = centred.shape
    gram_route = n <= f
    scatter = (centred @ centred.T if gram_route else centred.T @ centred).astype(np.float64)
    values, vectors = np.linalg.eigh(scatter)
    values, vectors = values[::-1][:k], vectors[:, ::-1][:, :k]
    keep = values > _RANK_TOLERANCE * max(values[0], 1e-30)
    values, vectors = values[keep], vectors[:, keep]
    if gram_route:
        vectors = (centred.T @ vectors.astype(np.float32)).astype(np.float64) / np.sqrt(values)
    total = float(np.trace(scatter))
    explained = float(values.sum() / total) if total > 0 else 0.0
    return vectors, values / max(n - 1, 1), explained


def within_class_whitening(
    projected: NDArray[np.float64],
    labels: NDArray[np.integer],
    *,
    regularization: float,
    extra_scatter: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """``[k, k]`` ``S^{-1/2}`` (up to a rotation, which cosine ignores) of projected walks
    ``[N, k]``: ``S`` is their within-identity covariance, plus ``extra_scatter`` (another
    nuisance to shrink, e.g. ``bench/embedding_head_fits.py``'s differences between two
    readings of one walk), plus the ridge ``regularization x tr / k`` of that sum."""
    kept = projected.shape[1]
    scatter = np.zeros((kept, kept))
    for identity in np.unique(labels):
        rows = projected[labels == identity]
        rows = rows - rows.mean(axis=0)
        scatter += rows.T @ rows
    scatter /= projected.shape[0]
    if extra_scatter is not None:
        scatter = scatter + extra_scatter
    ridge = regularization * max(float(np.trace(scatter)), 1e-12) / kept
    values, vectors = np.linalg.eigh(scatter + ridge * np.eye(kept))
    return vectors / np.sqrt(values)


def fit_reduction(
    features: NDArray[np.floating],
    labels: Sequence[int] | NDArray[np.integer],
    *,
    out_dim: int,
    regularization: float = 1.0,
) -> Reduction:
    """PCA to at most ``out_dim`` directions, then regularised within-class whitening.

    ``features`` ``[N, F]`` are the head's input (``EmbeddingHead.flatten_parts``), ``labels``
    the identity of each row. Raises ``EmbeddingFitError`` for fewer than 2 identities or
    fewer than 3 walks (no within- and between-identity spread to measure).
    """
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise EmbeddingFitError(
            f"features must be [N, F] with one label per row; got {x.shape} and {y.shape}"
        )
    identities = np.unique(y)
    if identities.size < 2 or x.shape[0] < 3:
        raise EmbeddingFitError(
            f"fitting the embedding needs >= 2 identities and >= 3 walks; got "
            f"{identities.size} identities and {x.shape[0]} walks"
        )
    if regularization <= 0:
        raise EmbeddingFitError(f"regularization must be > 0, got {regularization}")
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    centred = x - mean
    k = min(out_dim, x.shape[0] - 1, x.shape[1])
    directions, _, explained = principal_directions(centred, k)
    projected = (centred @ directions.astype(np.float32)).astype(np.float64)  # [N, k']
    kept = projected.shape[1]
    whitening = within_class_whitening(projected, y, regularization=regularization)
    weight = np.zeros((x.shape[1], out_dim), dtype=np.float32)
    weight[:, :kept] = directions @ whitening
    return Reduction(
        mean=mean,
        weight=weight,
        pca_dims=kept,
        explained_variance=explained,
        walks=int(x.shape[0]),
        identities=int(identities.size),
        regularization=float(regularization),
    )


def middle_window(walk: NDArray[np.uint8], max_frames: int | None) -> NDArray[np.uint8]:
    """The middle ``max_frames`` frames of ``walk`` (all of it when shorter or no cap)."""
    if max_frames is None or walk.shape[0] <= max_frames:
        return walk
    start = (walk.shape[0] - max_frames) // 2
    return walk[start : start + max_frames]


def fit_embedding(
    model: GaitNetwork,
    walks: Sequence[NDArray[np.uint8]],
    labels: Sequence[int],
    *,
    device: torch.device,
    max_walks: int = 4000,
    max_frames: int | None = None,
    regularization: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
) -> dict[str, Any]:
    """Fit ``model``'s embedding head on (a seeded sample of at most ``max_walks``) walks.

    Every frame of each walk is used, as in evaluation, unless ``max_frames`` caps it to the
    middle window of that many frames: the fit is then several times cheaper, which is what a
    time-budgeted run wants (the whitening needs many identities and walks far more than it
    needs every frame). Returns a JSON-friendly summary (walks, identities, directions kept,
    explained variance, seconds) for the run's records.
    """
    import torch

    from gaitid.training.evaluation.extract import torch_features

    if len(walks) != len(labels):
        raise EmbeddingFitError(f"{len(walks)} walks but {len(labels)} labels")
    started = time.monotonic()
    chosen = np.arange(len(walks))
    if len(walks) > max_walks:
        chosen = np.sort(np.random.default_rng(seed).choice(len(walks), max_walks, replace=False))
    sample = [middle_window(walks[int(i)], max_frames) for i in chosen]
    # the head is fitted on the part features of the frames as they are (the pass every
    # shift set starts with), not on a shift ensemble's
    _, parts = torch_features(model, sample, device=device, batch_size=batch_size, shifts="none")
    head = model.embedding_head
    flat = head.flatten_parts(torch.from_numpy(parts)).numpy()
    reduction = fit_reduction(
        flat,
        np.asarray(labels)[chosen],
        out_dim=head.out_dim,
        regularization=regularization,
    )
    head.set_reduction(
        torch.from_numpy(reduction.mean).to(head.mean.device),
        torch.from_numpy(reduction.weight).to(head.weight.device),
    )
    summary = {
        key: value for key, value in asdict(reduction).items() if key not in {"mean", "weight"}
    }
    summary["frames_per_walk"] = max_frames
    summary["seconds"] = round(time.monotonic() - started, 1)
    logger.info("fitted the embedding head: %s", summary)
    return summary
