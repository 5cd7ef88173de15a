"""Evaluation protocols of the field, computed from extracted features.

- CASIA-B (ST / MT / LT are the same computation on different test subjects): gallery
  nm-01..04; probe sets NM = nm-05/06, BG = bg-01/02, CL = cl-01/02; for every probe view and
  gallery view rank-1 with the gallery restricted to that view; the mean over the 10 other
  gallery views (identical view excluded), then over the 11 probe views (Tables III-V).
- OU-MVLP: gallery sequence 01, probe sequence 00, 14 views; reported twice, once counting
  probes whose subject has no gallery walk in that view as misses and once leaving them out.
- Retrieval (Gait3D style): R@1/5/10, mAP, mINP for any probe / gallery split by condition.

Each is computed with both distances: ``part`` (the paper's part-wise Euclidean, mean over
parts; needs part features, i.e. a PyTorch checkpoint) and ``embedding`` (``1 - cosine`` of the
256-d vectors the service uses). Percentages (0..100) are used from here on, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from gaitid.distance import cosine_similarity, part_wise_euclidean
from gaitid.errors import GaitidError
from gaitid.training.evaluation.metrics import (
    cross_view_rank1,
    mean_excluding_identical,
    nan_mean,
    retrieval_metrics,
)

Distance = Literal["part", "embedding"]
ProtocolName = Literal["casia-b", "ou-mvlp", "retrieval"]

CASIA_B_VIEWS: tuple[str, ...] = tuple(f"{a:03d}" for a in range(0, 181, 18))
CASIA_B_GALLERY: tuple[str, ...] = ("nm-01", "nm-02", "nm-03", "nm-04")
CASIA_B_PROBES: dict[str, tuple[str, ...]] = {
    "NM": ("nm-05", "nm-06"),
    "BG": ("bg-01", "bg-02"),
    "CL": ("cl-01", "cl-02"),
}
OU_MVLP_VIEWS: tuple[str, ...] = tuple(
    f"{a:03d}" for a in (*range(0, 91, 15), *range(180, 271, 15))
)
OU_MVLP_GALLERY: tuple[str, ...] = ("01",)
OU_MVLP_PROBES: dict[str, tuple[str, ...]] = {"NM": ("00",)}


class ProtocolError(GaitidError, ValueError):
    """Features that cannot be evaluated under the requested protocol."""


@dataclass(frozen=True)
class FeatureSet:
    """Features of every evaluated walk, row-aligned with its identity, condition and view."""

    subjects: NDArray[np.str_]  # [N]
    conditions: NDArray[np.str_]  # [N], e.g. "nm-05" or OU-MVLP's "00"
    views: NDArray[np.str_]  # [N], e.g. "090"
    embeddings: NDArray[np.float32]  # [N, 256] L2-normalised
    part_features: NDArray[np.float32] | None = None  # [N, P, D]; None from an ONNX model

    def __post_init__(self) -> None:
        n = self.embeddings.shape[0]
        for name in ("subjects", "conditions", "views"):
            if getattr(self, name).shape != (n,):
                raise ProtocolError(
                    f"{name} has shape {getattr(self, name).shape}; expected ({n},)"
                )
        if self.part_features is not None and self.part_features.shape[0] != n:
            raise ProtocolError(
                f"part_features has {self.part_features.shape[0]} rows; expected {n}"
            )

    def available_distances(self) -> list[Distance]:
        return ["part", "embedding"] if self.part_features is not None else ["embedding"]

    def subset(self, rows: NDArray[np.bool_] | NDArray[np.intp]) -> FeatureSet:
        """The walks where ``rows`` is true (e.g. the gallery and one probe set), or the walks
        at the indices ``rows``, in that order."""
        return FeatureSet(
            self.subjects[rows],
            self.conditions[rows],
            self.views[rows],
            self.embeddings[rows],
            None if self.part_features is None else self.part_features[rows],
        )

    def distance(
        self,
        rows: NDArray[np.int64],
        cols: NDArray[np.int64],
        kind: Distance,
        gallery: FeatureSet | None = None,
    ) -> NDArray[np.float32]:
        """``[len(rows), len(cols)]`` distances (smaller = more alike) from these walks' ``rows``
        to ``gallery``'s ``cols`` (this set's own when ``None``)."""
        other = self if gallery is None else gallery
        if kind == "part":
            if self.part_features is None or other.part_features is None:
                raise ProtocolError("part-wise distance needs part features (a PyTorch checkpoint)")
            return part_wise_euclidean(self.part_features[rows], other.part_features[cols])
        if kind == "embedding":
            return 1.0 - cosine_similarity(self.embeddings[rows], other.embeddings[cols])
        raise ProtocolError(f"unknown distance {kind!r}; allowed: 'part', 'embedding'")


@dataclass(frozen=True)
class CrossViewSpec:
    """A gallery / probe-set split evaluated per probe view x gallery view."""

    name: str
    views: tuple[str, ...]
    gallery: tuple[str, ...]
    probes: dict[str, tuple[str, ...]]


CASIA_B = CrossViewSpec("casia-b", CASIA_B_VIEWS, CASIA_B_GALLERY, CASIA_B_PROBES)
OU_MVLP = CrossViewSpec("ou-mvlp", OU_MVLP_VIEWS, OU_MVLP_GALLERY, OU_MVLP_PROBES)


@dataclass(frozen=True)
class CrossViewResult:
    """Rank-1 (percent) tables of one protocol under one distance."""

    protocol: str
    distance: Distance
    views: tuple[str, ...]
    exclude_unmatched: bool
    tables: dict[str, NDArray[np.float64]]  # probe set -> [V probe, V gallery]
    per_view: dict[str, NDArray[np.float64]] = field(default_factory=dict)  # mean excl. identical
    mean: dict[str, float] = field(default_factory=dict)  # probe set -> mean over probe views
    num_probes: dict[str, int] = field(default_factory=dict)
    num_gallery: int = 0
    #: probe set -> rank-1 extrapolated to a gallery of ``REPORTED_GALLERY`` subjects (CASIA-B
    #: with 4 to 49 gallery subjects; ``training.evaluation.gallery_size``), else empty
    larger_gallery: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrievalResult:
    distance: Distance
    metrics: dict[str, float | int]  # R@k, mAP, mINP in percent; counts as ints


def evaluate_cross_view(
    features: FeatureSet,
    spec: CrossViewSpec,
    distance: Distance,
    *,
    exclude_unmatched: bool = False,
) -> CrossViewResult:
    """Rank-1 per probe view x gallery view for every probe set of ``spec``."""
    gallery = np.flatnonzero(np.isin(features.conditions, spec.gallery))
    if gallery.size == 0:
        raise ProtocolError(
            f"no gallery walks for {spec.name}: conditions {list(spec.gallery)} are absent "
            f"(found {sorted(set(features.conditions.tolist()))})"
        )
    views = list(spec.views)
    tables, per_view, means, counts = {}, {}, {}, {}
    for probe_set, conditions in spec.probes.items():
        probes = np.flatnonzero(np.isin(features.conditions, conditions))
        counts[probe_set] = int(probes.size)
        if probes.size == 0:
            continue
        dist = features.distance(probes, gallery, distance)
        table = 100.0 * cross_view_rank1(
            dist,
            features.subjects[probes],
            features.views[probes],
            features.subjects[gallery],
            features.views[gallery],
            views,
            exclude_unmatched=exclude_unmatched,
        )
        tables[probe_set] = table
        per_view[probe_set] = mean_excluding_identical(table)
        means[probe_set] = nan_mean(per_view[probe_set])
    if not tables:
        raise ProtocolError(f"no probe walks for {spec.name}: none of {spec.probes} present")
    return CrossViewResult(
        spec.name,
        distance,
        spec.views,
        exclude_unmatched,
        tables,
        per_view,
        means,
        counts,
        int(gallery.size),
    )


def evaluate_retrieval(
    features: FeatureSet,
    distance: Distance,
    *,
    probe_conditions: tuple[str, ...],
    gallery_conditions: tuple[str, ...],
) -> RetrievalResult:
    """R@1/5/10, mAP, mINP (percent) of probes against a gallery of all views."""
    overlap = set(probe_conditions) & set(gallery_conditions)
    if overlap:
        raise ProtocolError(f"conditions {sorted(overlap)} are both probe and gallery")
    probes = np.flatnonzero(np.isin(features.conditions, probe_conditions))
    gallery = np.flatnonzero(np.isin(features.conditions, gallery_conditions))
    if probes.size == 0 or gallery.size == 0:
        raise ProtocolError(
            f"retrieval needs probes {list(probe_conditions)} and gallery "
            f"{list(gallery_conditions)}; "
            f"found {probes.size} probes and {gallery.size} gallery walks"
        )
    dist = features.distance(probes, gallery, distance)
    m = retrieval_metrics(dist, features.subjects[probes], features.subjects[gallery]).as_dict()
    scaled = {k: (100.0 * v if isinstance(v, float) else v) for k, v in m.items()}
    return RetrievalResult(distance, scaled)


def _with_larger_gallery(result: CrossViewResult, features: FeatureSet) -> CrossViewResult:
    """``result`` with its rank-1 extrapolated to a 50-subject gallery: a validation gallery
    of a dozen people flatters a model that will face many more."""
    from gaitid.training.evaluation.gallery_size import extrapolated_rank1  # imports this module

    return replace(result, larger_gallery=extrapolated_rank1(features, CASIA_B, result.distance))


def run_protocol(
    features: FeatureSet,
    protocol: ProtocolName,
    *,
    probe_conditions: tuple[str, ...] | None = None,
    gallery_conditions: tuple[str, ...] | None = None,
) -> list[CrossViewResult | RetrievalResult]:
    """Every result of ``protocol`` under every distance the features allow."""
    results: list[CrossViewResult | RetrievalResult] = []
    for distance in features.available_distances():
        if protocol == "casia-b":
            result = evaluate_cross_view(features, CASIA_B, distance)
            results.append(_with_larger_gallery(result, features))
        elif protocol == "ou-mvlp":
            results.append(evaluate_cross_view(features, OU_MVLP, distance))
            results.append(evaluate_cross_view(features, OU_MVLP, distance, exclude_unmatched=True))
        elif protocol == "retrieval":
            probe = probe_conditions or tuple(c for cs in CASIA_B_PROBES.values() for c in cs)
            results.append(
                evaluate_retrieval(
                    features,
                    distance,
                    probe_conditions=probe,
                    gallery_conditions=gallery_conditions or CASIA_B_GALLERY,
                )
            )
        else:
            raise ProtocolError(
                f"unknown protocol {protocol!r}; allowed: casia-b, ou-mvlp, retrieval"
            )
    return results
