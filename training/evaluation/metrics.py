"""Recognition metrics as pure functions on arrays (torchreid / OpenGait conventions).

Every function takes a distance matrix ``dist [num_probes, num_gallery]`` (smaller = more alike;
pass ``1 - cosine`` for similarities) and label arrays, and returns plain numbers or arrays. No
model, no files: the tests build matrices by hand with known answers.

Ties in distance are broken by gallery order (stable sort), so results are deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gaitid.errors import GaitidError


class MetricInputError(GaitidError, ValueError):
    """Distance matrix and label arrays that do not fit together."""


def _check(
    dist: ArrayLike, probe_labels: ArrayLike, gallery_labels: ArrayLike
) -> tuple[NDArray[np.float64], NDArray, NDArray]:
    d = np.asarray(dist, dtype=np.float64)
    pl, gl = np.asarray(probe_labels), np.asarray(gallery_labels)
    if d.ndim != 2:
        raise MetricInputError(
            f"distance matrix must be 2-D [probes, gallery], got shape {d.shape}"
        )
    if d.shape != (pl.shape[0], gl.shape[0]) or pl.ndim != 1 or gl.ndim != 1:
        raise MetricInputError(
            f"distance matrix {d.shape} does not match {pl.shape} probe and "
            f"{gl.shape} gallery labels"
        )
    if np.isnan(d).any():
        raise MetricInputError("distance matrix contains NaN")
    return d, pl, gl


def _ranked_matches(dist: NDArray[np.float64], pl: NDArray, gl: NDArray) -> NDArray[np.bool_]:
    """``[P, G]`` boolean: is the gallery item at rank r (0-based) the probe's identity."""
    order = np.argsort(dist, axis=1, kind="stable")
    return gl[order] == pl[:, None]


def rank1_hits(
    dist: ArrayLike, probe_labels: ArrayLike, gallery_labels: ArrayLike
) -> NDArray[np.bool_]:
    """Per probe: is its nearest gallery item of the same identity (False for an empty gallery)."""
    d, pl, gl = _check(dist, probe_labels, gallery_labels)
    if d.shape[1] == 0:
        return np.zeros(d.shape[0], dtype=bool)
    return gl[np.argmin(d, axis=1)] == pl  # argmin returns the first minimum: stable ties


def rank1_accuracy(dist: ArrayLike, probe_labels: ArrayLike, gallery_labels: ArrayLike) -> float:
    """Fraction (0..1) of probes whose nearest gallery item shares their identity; NaN if none."""
    hits = rank1_hits(dist, probe_labels, gallery_labels)
    return float(hits.mean()) if hits.size else float("nan")


@dataclass(frozen=True)
class RetrievalMetrics:
    """Gait3D-style retrieval summary; rates are fractions 0..1."""

    cmc: dict[int, float]  # rank r -> fraction of valid probes with a match in the top r
    mean_ap: float
    mean_inp: float
    num_probes: int  # all probes given
    num_valid_probes: int  # probes with at least one true match in the gallery

    def as_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {f"R@{r}": v for r, v in self.cmc.items()}
        out.update(
            mAP=self.mean_ap,
            mINP=self.mean_inp,
            num_probes=self.num_probes,
            num_valid_probes=self.num_valid_probes,
        )
        return out


def retrieval_metrics(
    dist: ArrayLike,
    probe_labels: ArrayLike,
    gallery_labels: ArrayLike,
    ranks: tuple[int, ...] = (1, 5, 10),
) -> RetrievalMetrics:
    """R@k (CMC), mAP and mINP over the probes that have a true match in the gallery.

    AP of a probe is the mean of precision@rank over the ranks of its true matches; INP is
    ``num_matches / (rank of the last true match)`` (Ye et al., the hardest match). Probes
    without any true match are left out, as torchreid does, and counted in ``num_valid_probes``.
    """
    if not ranks or min(ranks) < 1:
        raise MetricInputError(f"ranks must be positive integers, got {ranks}")
    d, pl, gl = _check(dist, probe_labels, gallery_labels)
    matches = _ranked_matches(d, pl, gl)
    valid = matches.any(axis=1)
    m = matches[valid].astype(np.float64)
    if m.shape[0] == 0:
        nan = float("nan")
        return RetrievalMetrics({r: nan for r in ranks}, nan, nan, d.shape[0], 0)
    cumulative = np.cumsum(m, axis=1)
    found = cumulative > 0  # [V, G]: a match within the first r+1
    cmc = {r: float(found[:, min(r, m.shape[1]) - 1].mean()) for r in ranks}
    positions = np.arange(1, m.shape[1] + 1, dtype=np.float64)
    precision = cumulative / positions
    num_matches = m.sum(axis=1)
    ap = (precision * m).sum(axis=1) / num_matches
    last = m.shape[1] - np.argmax(m[:, ::-1], axis=1)  # 1-based rank of the last true match
    inp = num_matches / last
    return RetrievalMetrics(cmc, float(ap.mean()), float(inp.mean()), d.shape[0], int(valid.sum()))


def cross_view_rank1(
    dist: ArrayLike,
    probe_labels: ArrayLike,
    probe_views: ArrayLike,
    gallery_labels: ArrayLike,
    gallery_views: ArrayLike,
    views: list[str],
    *,
    exclude_unmatched: bool = False,
) -> NDArray[np.float64]:
    """``[V, V]`` rank-1 (0..1) per probe view (rows) x gallery view (columns).

    For each cell the gallery is restricted to that gallery view and the probes to that probe
    view (CASIA-B / OU-MVLP protocol, OpenGait's ``identification``). With ``exclude_unmatched``
    a probe whose identity has no walk in that gallery view is dropped from the cell (OU-MVLP's
    second figure); otherwise it counts as a miss. A cell with no probes or no gallery is NaN.
    """
    d, pl, gl = _check(dist, probe_labels, gallery_labels)
    pv, gv = np.asarray(probe_views).astype(str), np.asarray(gallery_views).astype(str)
    if pv.shape != pl.shape or gv.shape != gl.shape:
        raise MetricInputError(
            f"view arrays {pv.shape}/{gv.shape} do not match labels {pl.shape}/{gl.shape}"
        )
    table = np.full((len(views), len(views)), np.nan)
    for i, probe_view in enumerate(views):
        rows = np.flatnonzero(pv == probe_view)
        for j, gallery_view in enumerate(views):
            cols = np.flatnonzero(gv == gallery_view)
            if rows.size == 0 or cols.size == 0:
                continue
            keep = rows
            if exclude_unmatched:
                keep = rows[np.isin(pl[rows], gl[cols])]
                if keep.size == 0:
                    continue
            table[i, j] = rank1_hits(d[np.ix_(keep, cols)], pl[keep], gl[cols]).mean()
    return table


def mean_excluding_identical(table: ArrayLike) -> NDArray[np.float64]:
    """Per probe view: mean over the other gallery views (diagonal and NaN cells left out)."""
    t = np.array(table, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise MetricInputError(f"a probe x gallery view table must be square, got shape {t.shape}")
    np.fill_diagonal(t, np.nan)
    out = np.full(t.shape[0], np.nan)
    for i, row in enumerate(t):
        if not np.isnan(row).all():
            out[i] = np.nanmean(row)
    return out


def nan_mean(values: ArrayLike) -> float:
    """Mean over the finite entries (NaN when there are none): the protocol's 'Mean' column."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")
