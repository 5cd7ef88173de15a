"""Rank-1 at a larger gallery than the held-out subjects make: what a 50-person test would say.

Why: our validation gallery holds the 12 held-out subjects 063-074, the withheld CASIA-B test
50 (chance 8.3 % against 2 %), so rank-1 here is an optimistic guess of rank-1 there (the
previous model: 95.3 / 91.5 / 76.9 for its validation twin, 92.9 / 86.2 / 65.0 on 075-124).
A probe is a rank-1 hit when its own subject's nearest walk is nearer than every impostor
subject's: what a larger gallery adds is more impostors to beat. For each probe of each cell
(probe view x gallery view, the CASIA-B protocol of :mod:`.protocols`) we count how many
impostor subjects come at least as close as the genuine one (:func:`impostor_counts`); three
figures follow from those counts:

1. *Exact, up to the held-out gallery*: the mean over every gallery of ``n`` held-out subjects
   that holds the probe's own (:func:`subsampled_rank1`); at ``n`` = all of them it is the
   protocol's rank-1.
2. *Padded with distractors*: the held-out gallery plus ``k`` subjects the model may have
   trained on (their gallery walks only), the mean over every draw of ``k``
   (:func:`padded_rank1`). A direct count, but of impostors the model knows: a network
   organises its space around its training identities, and on the shipped model an unseen
   person's walk lands near one of them more often than near another unseen person (with
   its own subject and 11 training subjects in the gallery, NM rank-1 is 94.2, with the 12
   held-out subjects 95.8; the ``confusion`` of :class:`GallerySizeEstimate` compares the two
   kinds per impostor), so this figure leans pessimistic.
3. *Extrapolated*: per probe view, the share of impostors that beat a probe is fitted as a Beta
   distribution to the held-out counts (a beta-binomial likelihood), and rank-1 at ``n - 1``
   impostors is ``E[(1 - f) ** (n - 1)]`` under it (:func:`beta_binomial_rank1`). It assumes
   impostors are independent draws from one population; :func:`extrapolation_check` measures
   how well it predicts the full held-out gallery from half of it. It leans optimistic: a
   dozen held-out subjects rarely include the few people who resemble many others, and the
   fit carries forward only what they show.

Neither is a bound; the truth for a larger gallery of unseen people is expected between them.

Distances are the service's (``1 - cosine`` of the 256-d embeddings); a probe whose subject has
no walk in the gallery view is a miss, as in the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special

from gaitid.training.evaluation.metrics import mean_excluding_identical, nan_mean
from gaitid.training.evaluation.protocols import (
    CASIA_B,
    CrossViewSpec,
    Distance,
    FeatureSet,
    ProtocolError,
)

#: The gallery size every CASIA-B report extrapolates to: the LT test set's 50 subjects.
REPORTED_GALLERY = 50

__all__ = [
    "REPORTED_GALLERY",
    "GallerySizeEstimate",
    "ImpostorCounts",
    "beta_binomial_fit",
    "beta_binomial_rank1",
    "estimate_gallery_size",
    "estimates_table",
    "extrapolated_rank1",
    "extrapolation_check",
    "impostor_counts",
    "padded_rank1",
    "subsampled_rank1",
]


@dataclass(frozen=True)
class ImpostorCounts:
    """One row per probe walk and gallery view (identical views included) of one probe set."""

    probe_view: NDArray[np.intp]  # index into the protocol's views
    gallery_view: NDArray[np.intp]
    genuine: NDArray[np.bool_]  # the probe's subject has a walk in that gallery view
    beaten: NDArray[np.int64]  # held-out impostor subjects at least as close as the genuine
    impostors: NDArray[np.int64]  # held-out impostor subjects with a walk in that view
    distractors_beaten: NDArray[np.int64]  # the same for the distractor subjects
    distractors: NDArray[np.int64]

    def select(self, rows: NDArray[np.bool_]) -> ImpostorCounts:
        return ImpostorCounts(*(getattr(self, name)[rows] for name in self.__dataclass_fields__))


def _subject_minima(
    dist: NDArray[np.float64], subjects: NDArray[np.str_]
) -> tuple[NDArray[np.str_], NDArray[np.float64]]:
    """Per probe row, the distance to each subject's nearest walk: ``(subjects, [P, S])``."""
    order = np.argsort(subjects, kind="stable")
    names, starts = np.unique(subjects[order], return_index=True)
    if dist.shape[1] == 0:
        return names, np.zeros((dist.shape[0], 0))
    return names, np.minimum.reduceat(dist[:, order], starts, axis=1)


def _gallery_subjects(features: FeatureSet, spec: CrossViewSpec) -> int:
    """How many subjects the gallery conditions of ``spec`` hold."""
    return int(np.unique(features.subjects[np.isin(features.conditions, spec.gallery)]).size)


def _check_subjects(held_out: int) -> int:
    """The gallery size :func:`extrapolation_check` fits on: half the held-out one."""
    return max(2, held_out // 2)


def _has_probes(features: FeatureSet, conditions: Sequence[str], spec: CrossViewSpec) -> bool:
    """Whether any walk of ``conditions`` is at a view of ``spec`` (a probe of some cell)."""
    return bool(
        (np.isin(features.conditions, conditions) & np.isin(features.views, spec.views)).any()
    )


def impostor_counts(
    features: FeatureSet,
    probe_conditions: Sequence[str],
    *,
    spec: CrossViewSpec = CASIA_B,
    distractors: FeatureSet | None = None,
    distance: Distance = "embedding",
) -> ImpostorCounts:
    """How many impostor subjects beat (or tie) the genuine one, per probe and gallery view.

    ``features`` holds the held-out subjects (gallery and probes); ``distractors`` other
    subjects' walks of the gallery conditions (none: no distractor counts). A distractor
    sharing a held-out subject's name is refused: it would be counted twice. ``distance`` is
    either of the protocol's (``part`` needs part features on both sets).
    """
    gallery_rows = np.isin(features.conditions, spec.gallery)
    # a probe at a view the protocol does not know is in no cell (as in evaluate_cross_view)
    probes = np.flatnonzero(
        np.isin(features.conditions, probe_conditions) & np.isin(features.views, spec.views)
    )
    if not gallery_rows.any() or probes.size == 0:
        raise ProtocolError(
            f"need gallery walks ({list(spec.gallery)}) and probe walks ({list(probe_conditions)})"
        )
    if distractors is not None:
        shared = set(distractors.subjects.tolist()) & set(features.subjects.tolist())
        if shared:
            raise ProtocolError(f"distractor subjects {sorted(shared)} are also held out")
        distractors = distractors.subset(np.isin(distractors.conditions, spec.gallery))
    probe_set = features.subset(probes)
    every_probe = np.arange(probes.size)
    probe_subjects = features.subjects[probes]
    probe_view = np.array([spec.views.index(v) for v in features.views[probes]], dtype=np.intp)
    columns: dict[str, list[NDArray]] = {name: [] for name in ImpostorCounts.__dataclass_fields__}
    for j, view in enumerate(spec.views):
        cols = np.flatnonzero(gallery_rows & (features.views == view))
        if cols.size == 0:  # no gallery in this view: the protocol's cell is empty, not a miss
            continue
        dist = probe_set.distance(every_probe, cols, distance, features).astype(np.float64)
        names, minima = _subject_minima(dist, features.subjects[cols])
        where = {name: i for i, name in enumerate(names)}
        genuine = np.array([s in where for s in probe_subjects])
        own = np.array([where.get(s, 0) for s in probe_subjects])
        best = np.where(genuine, minima[every_probe, own], -np.inf)
        closer = minima <= best[:, None]
        closer[every_probe[genuine], own[genuine]] = False
        beaten_d = np.zeros(probes.size, dtype=np.int64)
        count_d = 0
        if distractors is not None:
            d_cols = np.flatnonzero(distractors.views == view)
            d_dist = probe_set.distance(every_probe, d_cols, distance, distractors).astype(
                np.float64
            )
            d_names, d_minima = _subject_minima(d_dist, distractors.subjects[d_cols])
            beaten_d = (d_minima <= best[:, None]).sum(axis=1)
            count_d = d_names.size
        columns["probe_view"].append(probe_view)
        columns["gallery_view"].append(np.full(probes.size, j, dtype=np.intp))
        columns["genuine"].append(genuine)
        columns["beaten"].append(closer.sum(axis=1).astype(np.int64))
        columns["impostors"].append(names.size - genuine.astype(np.int64))
        columns["distractors_beaten"].append(beaten_d.astype(np.int64))
        columns["distractors"].append(np.full(probes.size, count_d, dtype=np.int64))
    return ImpostorCounts(**{name: np.concatenate(parts) for name, parts in columns.items()})


def _hypergeometric_miss_free(
    beaten: NDArray[np.int64], available: NDArray[np.int64], drawn: int
) -> NDArray[np.float64]:
    """P(none of ``drawn`` impostors, drawn without replacement from ``available`` of which
    ``beaten`` beat the genuine, is among those): ``C(available - beaten, drawn) /
    C(available, drawn)``."""
    if np.any(drawn > available):
        raise ProtocolError(f"cannot draw {drawn} impostors from {int(available.min())}")
    free = available - beaten
    possible = free >= drawn
    free = np.where(possible, free, drawn)  # keeps gammaln finite where the answer is 0
    log_p = (
        special.gammaln(free + 1)
        - special.gammaln(free - drawn + 1)
        - special.gammaln(available + 1)
        + special.gammaln(available - drawn + 1)
    )
    return np.where(possible, np.exp(log_p), 0.0)


def _protocol_mean(
    counts: ImpostorCounts, hit: NDArray[np.float64], views: int
) -> tuple[float, NDArray[np.float64]]:
    """Mean over cells of ``hit`` (per row, 0..1) the protocol's way: percent, identical view
    excluded, then over probe views. Returns ``(mean, per probe view)``."""
    table = np.full((views, views), np.nan)
    for i in range(views):
        for j in range(views):
            rows = (counts.probe_view == i) & (counts.gallery_view == j)
            if rows.any():
                table[i, j] = 100.0 * hit[rows].mean()
    per_view = mean_excluding_identical(table)
    return nan_mean(per_view), per_view


def subsampled_rank1(counts: ImpostorCounts, gallery_subjects: int, views: int) -> float:
    """Exact mean rank-1 over every gallery of ``gallery_subjects`` held-out subjects that
    holds the probe's own (identical views excluded, the protocol's mean)."""
    drawn = gallery_subjects - 1
    available = np.maximum(counts.impostors, drawn)  # a view short of subjects: all of them
    hit = counts.genuine * _hypergeometric_miss_free(counts.beaten, available, drawn)
    return _protocol_mean(counts, hit, views)[0]


def padded_rank1(counts: ImpostorCounts, distractor_subjects: int, views: int) -> float:
    """Exact mean rank-1 of the full held-out gallery plus ``distractor_subjects`` distractor
    subjects, over every draw of them."""
    hit = (
        counts.genuine
        * (counts.beaten == 0)
        * _hypergeometric_miss_free(
            counts.distractors_beaten, counts.distractors, distractor_subjects
        )
    )
    return _protocol_mean(counts, hit, views)[0]


# Bounds of the fit's log-parameters. Where every probe is beaten by at most one impostor the
# likelihood keeps rising as alpha and beta grow together (the binomial limit) or shrink
# together (a two-point mixture); the bounds stop the search where the estimate no longer moves.
_LOG_PARAM_BOUNDS = (-20.0, 20.0)


def _rising_log(x: float, counts: NDArray[np.int64], top: int) -> NDArray[np.float64]:
    """``log(x (x + 1) ... (x + n - 1))`` for each ``n`` in ``counts`` (the log rising
    factorial), summed term by term so that it stays exact for any ``x``, where the difference
    of two ``betaln`` of large arguments loses every digit."""
    cumulative = np.concatenate(([0.0], np.cumsum(np.log(x + np.arange(top)))))
    rising: NDArray[np.float64] = cumulative[counts]
    return rising


def beta_binomial_fit(
    beaten: NDArray[np.int64], available: NDArray[np.int64]
) -> tuple[float, float]:
    """Maximum-likelihood ``(alpha, beta)`` of a beta-binomial for ``beaten`` of ``available``:
    the share of impostors that beat a probe, as a Beta distribution over probes."""
    hits = np.asarray(beaten, dtype=np.int64)
    totals = np.asarray(available, dtype=np.int64)
    if hits.size == 0:
        raise ProtocolError("no probes to fit")
    top = int(totals.max())

    def negative_log_likelihood(log_params: NDArray[np.float64]) -> float:
        # log B(x + a, m - x + b) - log B(a, b), as rising factorials of a, b and a + b
        a, b = (float(v) for v in np.exp(log_params))
        log_likelihood = (
            _rising_log(a, hits, top)
            + _rising_log(b, totals - hits, top)
            - _rising_log(a + b, totals, top)
        )
        return -float(np.sum(log_likelihood))

    mean = np.clip(hits.sum() / max(float(totals.sum()), 1.0), 1e-4, 0.5)
    start = np.log([mean * 2.0, (1.0 - mean) * 2.0])
    fit = optimize.minimize(
        negative_log_likelihood,
        start,
        method="Nelder-Mead",
        bounds=[_LOG_PARAM_BOUNDS, _LOG_PARAM_BOUNDS],
        options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 4000},
    )
    a, b = np.exp(fit.x)
    return float(a), float(b)


def beta_binomial_rank1(alpha: float, beta: float, impostors: int) -> float:
    """``E[(1 - f) ** impostors]`` for ``f ~ Beta(alpha, beta)``: rank-1 against that many.

    The product ``prod_j (beta + j) / (alpha + beta + j)`` over ``j < impostors``, which is that
    expectation exactly and stays in [0, 1] for any parameters (a ratio of ``betaln`` overflows
    near the binomial limit, where both parameters are large)."""
    steps = np.arange(impostors, dtype=np.float64)
    return float(np.exp(np.sum(np.log1p(-alpha / (alpha + beta + steps)))))


def _fitted_hits(
    fit: ImpostorCounts, apply: ImpostorCounts, impostors: int, views: int
) -> NDArray[np.float64]:
    """Per row of ``apply``, rank-1 against ``impostors`` under the beta-binomial fitted on
    ``fit``'s cross-view rows of the same probe view (cells pooled; 0 without a genuine)."""
    hit = np.zeros(apply.genuine.size)
    for i in range(views):
        fit_rows = fit.genuine & (fit.probe_view == i) & (fit.gallery_view != i)
        if fit_rows.any():
            alpha, beta = beta_binomial_fit(fit.beaten[fit_rows], fit.impostors[fit_rows])
            hit[apply.genuine & (apply.probe_view == i)] = beta_binomial_rank1(
                alpha, beta, impostors
            )
    return hit


def _extrapolated(counts: ImpostorCounts, gallery_subjects: int, views: int) -> float:
    """Rank-1 at ``gallery_subjects`` from one beta-binomial per probe view (cells pooled)."""
    hit = _fitted_hits(counts, counts, gallery_subjects - 1, views)
    return _protocol_mean(counts, hit, views)[0]


def extrapolated_rank1(
    features: FeatureSet,
    spec: CrossViewSpec,
    distance: Distance,
    gallery_subjects: int = REPORTED_GALLERY,
) -> dict[str, float]:
    """Every probe set's beta-binomial rank-1 at ``gallery_subjects`` (the figure a report
    prints beside its own); empty when the gallery holds fewer than 4 subjects or already
    ``gallery_subjects``: there is then nothing to fit, or nothing to extrapolate."""
    held_out = _gallery_subjects(features, spec)
    if held_out < 4 or held_out >= gallery_subjects:
        return {}
    out: dict[str, float] = {}
    for probe_set, conditions in spec.probes.items():
        if _has_probes(features, conditions, spec):
            counts = impostor_counts(features, conditions, spec=spec, distance=distance)
            out[probe_set] = _extrapolated(counts, gallery_subjects, len(spec.views))
    return out


def extrapolation_check(
    counts: ImpostorCounts, fit_subjects: int, views: int, *, draws: int = 20, seed: int = 0
) -> tuple[float, float]:
    """``(predicted, exact)`` rank-1 of the full held-out gallery, the prediction fitted on
    galleries of ``fit_subjects`` held-out subjects only (``draws`` random impostor subsets of
    each probe, thinned from its counts): how far the extrapolation is off over that span."""
    rng = np.random.default_rng(seed)
    drawn = fit_subjects - 1
    usable = counts.genuine & (counts.impostors >= drawn)
    repeated = counts.select(np.repeat(np.flatnonzero(usable), draws))
    thinned = rng.hypergeometric(
        repeated.beaten, repeated.impostors - repeated.beaten, np.full(repeated.beaten.size, drawn)
    )
    small = replace(
        repeated,
        beaten=thinned.astype(np.int64),
        impostors=np.full(thinned.size, drawn, dtype=np.int64),
    )
    full = int(np.median(counts.impostors[counts.genuine])) + 1
    predicted = _protocol_mean(counts, _fitted_hits(small, counts, full - 1, views), views)[0]
    exact = _protocol_mean(counts, (counts.genuine & (counts.beaten == 0)).astype(float), views)[0]
    return predicted, exact


@dataclass(frozen=True)
class GallerySizeEstimate:
    """The three figures of one probe set (percent), and what they rest on."""

    held_out_subjects: int
    target_subjects: int
    exact: float  # rank-1 of the held-out gallery (the protocol's figure)
    extrapolated: float  # beta-binomial, at the target size
    padded: float | None  # held-out + distractors up to the target size
    confusion: tuple[float, float | None]  # P(one held-out impostor / one distractor beats)
    check: tuple[float, float]  # (predicted from half the gallery, exact) at the full gallery

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def estimate_gallery_size(
    features: FeatureSet,
    target_subjects: int,
    *,
    distractors: FeatureSet | None = None,
    spec: CrossViewSpec = CASIA_B,
) -> dict[str, GallerySizeEstimate]:
    """Every probe set's rank-1 at a gallery of ``target_subjects`` (see the module doc)."""
    held_out = _gallery_subjects(features, spec)
    if held_out < 4:
        raise ProtocolError(f"need at least 4 held-out subjects, got {held_out}")
    if target_subjects < held_out:
        raise ProtocolError(
            f"target gallery of {target_subjects} is smaller than the {held_out} held out: "
            "subsample instead"
        )
    views = len(spec.views)
    results: dict[str, GallerySizeEstimate] = {}
    for probe_set, conditions in spec.probes.items():
        if not _has_probes(features, conditions, spec):
            continue
        counts = impostor_counts(features, conditions, spec=spec, distractors=distractors)
        cross = counts.genuine & (counts.probe_view != counts.gallery_view)
        confusion_d: float | None = None
        padded: float | None = None
        extra = target_subjects - held_out
        if distractors is not None and counts.distractors.size and counts.distractors.min() > 0:
            confusion_d = float(
                counts.distractors_beaten[cross].sum() / counts.distractors[cross].sum()
            )
            if extra <= counts.distractors.min():
                padded = padded_rank1(counts, extra, views)
        results[probe_set] = GallerySizeEstimate(
            held_out_subjects=held_out,
            target_subjects=target_subjects,
            exact=subsampled_rank1(counts, held_out, views),
            extrapolated=_extrapolated(counts, target_subjects, views),
            padded=padded,
            confusion=(
                float(counts.beaten[cross].sum() / max(counts.impostors[cross].sum(), 1)),
                confusion_d,
            ),
            check=extrapolation_check(counts, _check_subjects(held_out), views),
        )
    return results


def estimates_table(estimates: Mapping[str, GallerySizeEstimate]) -> str:
    """Markdown: one row per probe set."""
    first = next(iter(estimates.values()))
    n, target = first.held_out_subjects, first.target_subjects
    lines = [
        f"| probe set | rank-1, {n} subjects | extrapolated to {target} | padded to {target} "
        f"| P(beaten) held-out / distractor | check: {n} from {_check_subjects(n)} (exact) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, e in estimates.items():
        padded = "n/a" if e.padded is None else f"{e.padded:.1f}"
        distractor = "n/a" if e.confusion[1] is None else f"{100 * e.confusion[1]:.2f} %"
        lines.append(
            f"| {name} | {e.exact:.1f} | {e.extrapolated:.1f} | {padded} "
            f"| {100 * e.confusion[0]:.2f} % / {distractor} | {e.check[0]:.1f} ({e.check[1]:.1f}) |"
        )
    return "\n".join(lines)
