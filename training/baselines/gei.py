"""Gait energy image (GEI) + nearest neighbour: the reference floor for any learned model.

Han & Bhanu (TPAMI 2006): a walk's GEI is the mean of its aligned silhouettes, here the
network's middle 64x44 crop on the [0, 1] scale. Walks are matched by Euclidean distance
between GEIs, under the CASIA-B protocol: gallery nm-01..04; probes nm-05/06 (NM), bg-01/02
(BG) and cl-01/02 (CL); rank-1 accuracy for every (probe view, gallery view) pair, the
identical-view pairs excluded from the cross-view mean (OpenGait's ``de_diag``).

:func:`casia_b_rank1` is a pure function of arrays so it can be tested on hand-built
features. The protocol itself (conditions, per-view rank-1, identical views left out) comes
from the evaluation package's numpy-only ``metrics`` and ``protocols`` modules, so the baseline
and the learned models are scored by the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gaitid.preprocess import to_network_input
from gaitid.training.data.opengait import WalkKey
from gaitid.training.evaluation.metrics import cross_view_rank1, mean_excluding_identical, nan_mean
from gaitid.training.evaluation.protocols import CASIA_B_GALLERY, CASIA_B_PROBES


def gait_energy_image(frames64: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Mean over time of the network input ``(T, 64, 64)`` uint8 -> ``(64, 44)`` in [0, 1]."""
    network_input = to_network_input(frames64)  # [T, 64, 64] -> [T, 64, 44]
    return (network_input.astype(np.float32).mean(axis=0) / np.float32(255.0)).astype(np.float32)


@dataclass(frozen=True)
class WalkFeatures:
    """One row per walk: ``features`` ``[N, D]`` and the walk's subject, condition and view."""

    features: NDArray[np.float32]
    labels: NDArray[np.str_]
    conditions: NDArray[np.str_]
    views: NDArray[np.str_]


def gei_features(walks: Mapping[WalkKey, NDArray[np.uint8]]) -> WalkFeatures:
    """Flattened GEIs ``[N, 64*44]`` of ``walks`` (in key order) with their metadata."""
    if not walks:
        raise ValueError("gei_features needs at least one walk")
    keys = sorted(walks)
    features = np.stack([gait_energy_image(walks[key]).reshape(-1) for key in keys])
    return WalkFeatures(
        features=features,
        labels=np.array([k.subject for k in keys]),
        conditions=np.array([k.condition for k in keys]),
        views=np.array([k.view for k in keys]),
    )


def euclidean_distances(
    probe: NDArray[np.floating], gallery: NDArray[np.floating]
) -> NDArray[np.float64]:
    """``[N, D] x [M, D] -> [N, M]`` Euclidean distances (float64, via the norm expansion)."""
    p = np.asarray(probe, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    squared = (p * p).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * p @ g.T
    return np.sqrt(np.maximum(squared, 0.0))


@dataclass(frozen=True)
class Rank1Table:
    """Rank-1 accuracy (%) per probe group: ``[probe view, gallery view]``, NaN where empty."""

    views: tuple[str, ...]
    accuracy: dict[str, NDArray[np.float64]]

    def per_probe_view(self, group: str) -> NDArray[np.float64]:
        """Mean over gallery views other than the probe's own, one value per probe view."""
        return mean_excluding_identical(self.accuracy[group])

    def cross_view(self, group: str) -> float:
        """The headline figure: mean over probe views of :meth:`per_probe_view`."""
        return nan_mean(self.per_probe_view(group))

    def same_view(self, group: str) -> float:
        """Mean of the identical-view pairs (not part of the protocol; easy by design)."""
        diagonal = np.diag(self.accuracy[group])
        diagonal = diagonal[~np.isnan(diagonal)]
        return float(diagonal.mean()) if diagonal.size else float("nan")


def casia_b_rank1(
    features: NDArray[np.floating],
    labels: Sequence[str] | NDArray[np.str_],
    conditions: Sequence[str] | NDArray[np.str_],
    views: Sequence[str] | NDArray[np.str_],
    gallery_conditions: Sequence[str] = CASIA_B_GALLERY,
    probe_groups: Mapping[str, Sequence[str]] = CASIA_B_PROBES,
) -> Rank1Table:
    """CASIA-B rank-1 of nearest-neighbour (Euclidean) matching of ``features`` ``[N, D]``.

    For every probe view and gallery view, each probe walk is matched to the closest gallery
    walk of that view; a hit when the subjects agree. As in OpenGait, a probe whose subject
    has no gallery walk at that view counts as a miss. Groups with no probe walk get NaN.
    """
    feats = np.asarray(features)
    labels_a, conditions_a, views_a = (
        np.asarray(x).astype(str) for x in (labels, conditions, views)
    )
    n = feats.shape[0]
    if feats.ndim != 2 or not (labels_a.shape == conditions_a.shape == views_a.shape == (n,)):
        raise ValueError(
            f"features must be [N, D] with N labels, conditions and views; got features "
            f"{feats.shape}, labels {labels_a.shape}, conditions {conditions_a.shape}, "
            f"views {views_a.shape}"
        )
    view_list = tuple(sorted(set(views_a.tolist())))
    gallery_mask = np.isin(conditions_a, list(gallery_conditions))
    if not gallery_mask.any():
        raise ValueError(f"no gallery walk: none has a condition in {list(gallery_conditions)}")
    gallery_idx = np.flatnonzero(gallery_mask)
    accuracy: dict[str, NDArray[np.float64]] = {}
    for group, group_conditions in probe_groups.items():
        overlap = set(group_conditions) & set(gallery_conditions)
        if overlap:
            raise ValueError(f"probe group {group} reuses gallery conditions {sorted(overlap)}")
        probe_idx = np.flatnonzero(np.isin(conditions_a, list(group_conditions)))
        table = np.full((len(view_list), len(view_list)), np.nan)
        if probe_idx.size:
            distances = euclidean_distances(feats[probe_idx], feats[gallery_idx])
            table = 100.0 * cross_view_rank1(
                distances,
                labels_a[probe_idx],
                views_a[probe_idx],
                labels_a[gallery_idx],
                views_a[gallery_idx],
                list(view_list),
            )
        accuracy[group] = table
    return Rank1Table(views=view_list, accuracy=accuracy)


def gei_baseline(walks: Mapping[WalkKey, NDArray[np.uint8]]) -> Rank1Table:
    """GEI + Euclidean nearest neighbour under the CASIA-B protocol on ``walks``."""
    data = gei_features(walks)
    return casia_b_rank1(data.features, data.labels, data.conditions, data.views)
