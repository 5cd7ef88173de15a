"""Open-set figures and the decision threshold of a model, from walks it was not trained on.

The service decides "match" when the best identity's cosine score reaches a threshold, and an
identity's score is its best template's (``service.identify``). This module measures exactly
that decision on held-out subjects, under the CASIA-B split (gallery nm-01..04 in every view as
each identity's templates; probes NM / BG / CL in every view, cross-view pairs included):

- **Verification (1:1)**: a probe walk against a claimed identity. Genuine scores are a probe
  against its own identity, impostor scores against every other identity. Two enrolment
  regimes are reported: ``identity`` (the identity holds all 44 gallery walks, score = best
  template: the conservative case, since more templates raise impostor scores) and ``walk``
  (one template per identity: every probe walk against every gallery walk). FMR(t) is the
  share of impostor scores >= t, FNMR(t) the share of genuine scores < t; the ROC / DET curve
  is FNMR against FMR.
- **Open-set identification (1:N)**: half of the subjects are enrolled, the other half are
  probes whose identity is not in the gallery (seeded splits, averaged). FAR(t) is the share of
  non-enrolled probes whose best score reaches t; DIR(t) (detection and identification rate) the
  share of enrolled probes whose best identity is the right one and reaches t. Reported at
  FAR = 1 %, as NIST's face recognition evaluations do.

The default threshold is the lowest score whose FMR, under the ``identity`` regime, does not
exceed the target (1e-3 unless told). With few impostor scores a low FMR is poorly resolved:
the number of impostor scores is reported so a reader can judge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gaitid.distance import cosine_similarity
from gaitid.training.evaluation.protocols import (
    CASIA_B_GALLERY,
    CASIA_B_PROBES,
    FeatureSet,
    ProtocolError,
)

#: FMR values tabulated in the report (the target is added when missing).
FMR_POINTS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
#: FAR at which open-set identification is summarised.
OPEN_SET_FAR = 0.01


@dataclass(frozen=True)
class ScoreSets:
    """Genuine and impostor scores of one enrolment regime."""

    genuine: NDArray[np.float64]
    impostor: NDArray[np.float64]


@dataclass
class OpenSetResult:
    """Everything the model card and the export need from a calibration."""

    target_fmr: float
    threshold: float  # lowest score with FMR <= target_fmr (identity regime)
    regimes: dict[str, dict[str, Any]]  # regime -> counts, EER, FNMR at FMR points
    at_threshold: dict[str, dict[str, float]]  # regime -> FMR / FNMR at the chosen threshold
    open_set: dict[str, Any]  # DIR at FAR 1 % per probe set, splits, counts
    subjects: list[str]
    curves: dict[str, Any] = field(default_factory=dict, repr=False)  # for plots, not JSON
    # probes read by another route (camera clips): how the route moves the threshold against
    # the same walks' clean silhouettes (``threshold_transfer.RouteShift.as_record``)
    route_shift: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("curves")
        return out


def _rows(features: FeatureSet, conditions: tuple[str, ...]) -> NDArray[np.int64]:
    return np.flatnonzero(np.isin(features.conditions, conditions)).astype(np.int64)


def identity_scores(
    scores: NDArray[np.float64], gallery_subjects: NDArray[np.str_], identities: NDArray[np.str_]
) -> NDArray[np.float64]:
    """``[probes, walks] -> [probes, identities]``: each identity's best template score."""
    out = np.full((scores.shape[0], identities.size), -np.inf)
    for j, identity in enumerate(identities):
        columns = gallery_subjects == identity
        if columns.any():
            out[:, j] = scores[:, columns].max(axis=1)
    return out


def fmr_fnmr(scores: ScoreSets, threshold: float) -> tuple[float, float]:
    """(FMR, FNMR) at ``threshold``: scores equal to it match, as the service decides."""
    fmr = float(np.mean(scores.impostor >= threshold)) if scores.impostor.size else float("nan")
    fnmr = float(np.mean(scores.genuine < threshold)) if scores.genuine.size else float("nan")
    return fmr, fnmr


def threshold_at_fmr(impostor: NDArray[np.float64], target: float) -> float:
    """The lowest threshold whose FMR does not exceed ``target``.

    With ``n`` impostor scores sorted high to low, at most ``floor(target * n)`` may reach the
    threshold, so it sits just above the next one (``nextafter``).
    """
    if impostor.size == 0:
        raise ProtocolError("no impostor scores: calibration needs at least two subjects")
    ranked = np.sort(impostor)[::-1]
    allowed = int(np.floor(target * ranked.size))
    if allowed >= ranked.size:
        return float(ranked[-1])
    return float(np.nextafter(ranked[allowed], np.inf))


def det_curve(scores: ScoreSets) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray]:
    """(FMR, FNMR, thresholds) at every distinct score, thresholds ascending."""
    thresholds = np.unique(np.concatenate([scores.genuine, scores.impostor]))
    impostor = np.sort(scores.impostor)
    genuine = np.sort(scores.genuine)
    fmr = 1.0 - np.searchsorted(impostor, thresholds, side="left") / max(impostor.size, 1)
    fnmr = np.searchsorted(genuine, thresholds, side="left") / max(genuine.size, 1)
    return fmr, fnmr, thresholds


def equal_error_rate(fmr: NDArray[np.float64], fnmr: NDArray[np.float64]) -> float:
    """The rate where a DET curve's FMR and FNMR cross (mean of the two where closest)."""
    i = int(np.argmin(np.abs(fmr - fnmr)))
    return float((fmr[i] + fnmr[i]) / 2)


def verification_scores(features: FeatureSet) -> dict[str, ScoreSets]:
    """Genuine / impostor scores of every probe walk, per enrolment regime."""
    gallery = _rows(features, CASIA_B_GALLERY)
    probes = _rows(features, tuple(c for cs in CASIA_B_PROBES.values() for c in cs))
    if gallery.size == 0 or probes.size == 0:
        raise ProtocolError(
            f"open-set calibration needs gallery walks {CASIA_B_GALLERY} and probe walks "
            f"{sorted(c for cs in CASIA_B_PROBES.values() for c in cs)}"
        )
    scores = cosine_similarity(features.embeddings[probes], features.embeddings[gallery]).astype(
        np.float64
    )
    p_subj, g_subj = features.subjects[probes], features.subjects[gallery]
    identities = np.unique(g_subj)
    if identities.size < 2:
        raise ProtocolError("open-set calibration needs at least two subjects in the gallery")
    same_walk = p_subj[:, None] == g_subj[None, :]
    per_identity = identity_scores(scores, g_subj, identities)
    same_identity = p_subj[:, None] == identities[None, :]
    enrolled = np.isin(p_subj, identities)
    return {
        "identity": ScoreSets(
            per_identity[same_identity], per_identity[enrolled][~same_identity[enrolled]]
        ),
        "walk": ScoreSets(scores[same_walk], scores[~same_walk]),
    }


def open_set_identification(
    features: FeatureSet, *, splits: int = 20, seed: int = 0, far: float = OPEN_SET_FAR
) -> dict[str, Any]:
    """DIR at FAR ``far`` over seeded half/half splits of the subjects into enrolled and not.

    Each split: the enrolled half's gallery walks are the gallery; every probe walk of the
    enrolled half is a mated search, every probe walk of the other half a non-mated one. The
    threshold of each split is the one giving FAR = ``far`` on its non-mated searches; DIR is
    read there per probe set, and the splits are averaged.
    """
    gallery = _rows(features, CASIA_B_GALLERY)
    subjects = np.unique(features.subjects[gallery])
    if subjects.size < 4:
        raise ProtocolError("open-set identification needs at least four subjects")
    rng = np.random.default_rng(seed)
    per_set: dict[str, list[float]] = {name: [] for name in CASIA_B_PROBES}
    overall: list[float] = []
    thresholds: list[float] = []
    mated = non_mated = 0
    for _ in range(splits):
        chosen = rng.permutation(subjects)[: subjects.size // 2]
        g = gallery[np.isin(features.subjects[gallery], chosen)]
        identities = np.sort(chosen)
        hits_all: list[NDArray[np.bool_]] = []
        best_scores: dict[str, tuple[NDArray[np.float64], NDArray[np.bool_]]] = {}
        unknown_best: list[NDArray[np.float64]] = []
        for name, conditions in CASIA_B_PROBES.items():
            p = _rows(features, conditions)
            sims = cosine_similarity(features.embeddings[p], features.embeddings[g])
            ids = identity_scores(sims.astype(np.float64), features.subjects[g], identities)
            best = ids.max(axis=1)
            right = identities[ids.argmax(axis=1)] == features.subjects[p]
            known = np.isin(features.subjects[p], chosen)
            best_scores[name] = (best[known], right[known])
            unknown_best.append(best[~known])
        impostor = np.concatenate(unknown_best)
        t = threshold_at_fmr(impostor, far)
        thresholds.append(t)
        non_mated += impostor.size
        for name, (best, right) in best_scores.items():
            hit = right & (best >= t)
            per_set[name].append(100.0 * float(hit.mean()))
            hits_all.append(hit)
            mated += best.size
        overall.append(100.0 * float(np.concatenate(hits_all).mean()))
    return {
        "far": far,
        "splits": splits,
        "enrolled_subjects_per_split": int(subjects.size // 2),
        "dir": {name: float(np.mean(v)) for name, v in per_set.items()},
        "dir_all": float(np.mean(overall)),
        "threshold_mean": float(np.mean(thresholds)),
        "mated_searches": mated,
        "non_mated_searches": non_mated,
    }


def calibrate(features: FeatureSet, *, target_fmr: float = 1e-3, splits: int = 20) -> OpenSetResult:
    """Verification curves, open-set identification and the default threshold."""
    if not 0 < target_fmr < 1:
        raise ProtocolError(f"target FMR must be in (0, 1), got {target_fmr}")
    sets = verification_scores(features)
    threshold = threshold_at_fmr(sets["identity"].impostor, target_fmr)
    points = sorted({*FMR_POINTS, target_fmr})
    regimes: dict[str, dict[str, Any]] = {}
    at_threshold: dict[str, dict[str, float]] = {}
    curves: dict[str, Any] = {}
    for regime, scores in sets.items():
        fnmr_at = {
            f"{point:g}": fmr_fnmr(scores, threshold_at_fmr(scores.impostor, point))[1]
            for point in points
        }
        curves[regime] = det_curve(scores)
        regimes[regime] = {
            "genuine": int(scores.genuine.size),
            "impostor": int(scores.impostor.size),
            "eer": equal_error_rate(*curves[regime][:2]),
            "fnmr_at_fmr": fnmr_at,
        }
        fmr, fnmr = fmr_fnmr(scores, threshold)
        at_threshold[regime] = {"fmr": fmr, "fnmr": fnmr}
    identification = open_set_identification(features, splits=splits)
    subjects = sorted({str(s) for s in features.subjects.tolist()})
    return OpenSetResult(
        target_fmr, threshold, regimes, at_threshold, identification, subjects, curves
    )


def to_markdown(result: OpenSetResult) -> str:
    """The card's tables: FNMR at FMR points per regime, the threshold, DIR at FAR 1 %."""
    points = list(next(iter(result.regimes.values()))["fnmr_at_fmr"])
    lines = [
        f"Default threshold (cosine, FMR <= {result.target_fmr:g}, identity regime): "
        f"**{result.threshold:.4f}**",
        "",
        "| regime | genuine | impostor | EER % | "
        + " | ".join(f"FNMR % at FMR {p}" for p in points)
        + " | FMR / FNMR % at the threshold |",
        "|---|---:|---:|---:|" + "---:|" * len(points) + "---:|",
    ]
    for regime, r in result.regimes.items():
        at = result.at_threshold[regime]
        lines.append(
            f"| {regime} | {r['genuine']} | {r['impostor']} | {100 * r['eer']:.2f} | "
            + " | ".join(f"{100 * r['fnmr_at_fmr'][p]:.1f}" for p in points)
            + f" | {100 * at['fmr']:.3f} / {100 * at['fnmr']:.1f} |"
        )
    o = result.open_set
    lines += [
        "",
        f"Open-set identification ({o['splits']} seeded splits, {o['enrolled_subjects_per_split']}"
        f" subjects enrolled, the others unknown): DIR % at FAR {100 * o['far']:g} %",
        "",
        "| " + " | ".join(o["dir"]) + " | all | threshold (mean) |",
        "|" + "---:|" * (len(o["dir"]) + 2),
        "| "
        + " | ".join(f"{v:.1f}" for v in o["dir"].values())
        + f" | {o['dir_all']:.1f} | {o['threshold_mean']:.4f} |",
    ]
    if (shift := result.route_shift) is not None:
        lines += [
            "",
            f"The same {shift['probe_walks']} probe walks as clean silhouettes, same gallery: "
            f"threshold {shift['silhouettes_at_fmr']:.4f} at FMR {shift['target_fmr']:g} "
            f"({shift['impostor_scores']} impostor scores), against {shift['route_at_fmr']:.4f} "
            f"through this route: the route moves it by **{shift['shift']:+.4f}** (`gaitid "
            "export --clip-threshold-from` adds this shift to the clean default threshold).",
        ]
    return "\n".join(lines) + "\n"


def save_curves(result: OpenSetResult, path: Path) -> Path:
    """DET curve (FNMR against FMR, log axes) per regime with the threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for regime, (fmr, fnmr, _) in result.curves.items():
        keep = (fmr > 0) & (fnmr > 0)
        ax.plot(
            100 * fmr[keep],
            100 * fnmr[keep],
            label=f"{regime} (EER {100 * result.regimes[regime]['eer']:.1f} %)",
        )
        at = result.at_threshold[regime]
        ax.plot([100 * max(at["fmr"], 1e-9)], [100 * max(at["fnmr"], 1e-9)], "o", color="black")
    ax.axvline(100 * result.target_fmr, color="grey", linestyle=":", label="target FMR")
    ax.set_xlim(1e-4, 100)  # percent; fixed, so a curve with no error at all still plots
    ax.set_ylim(1e-3, 100)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false match rate (%)")
    ax.set_ylabel("false non-match rate (%)")
    ax.set_title(f"DET, cosine threshold {result.threshold:.3f} (dots)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_calibration(
    result: OpenSetResult,
    out_dir: Path,
    *,
    model: str,
    shifts: str,
    probes: str = "silhouettes",
) -> list[Path]:
    """``calibration.json`` (read by ``gaitid export --threshold-from``), ``calibration.md``
    and ``det.png`` under ``out_dir``. Only the model's file name is recorded, no local path;
    ``shifts`` is the test-time shift set the embeddings averaged (a threshold holds only for
    the embedding function it was measured on, so export checks it); ``probes`` says how the
    probe walks were read (``silhouettes``, or the clip route)."""
    import json

    out_dir.mkdir(parents=True, exist_ok=True)
    record = {"model": model, "test_time_shifts": shifts, "probes": probes, **result.as_dict()}
    paths = [out_dir / "calibration.json", out_dir / "calibration.md", out_dir / "det.png"]
    paths[0].write_text(json.dumps(record, indent=2) + "\n")
    paths[1].write_text(to_markdown(result))
    save_curves(result, paths[2])
    return paths


def read_threshold(path: Path) -> tuple[float, dict[str, Any]]:
    """The threshold and a short provenance record from a ``calibration.json``."""
    import json

    try:
        record = json.loads(Path(path).read_text())
        threshold = float(record["threshold"])
        target = float(record["target_fmr"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"{path} is not a calibration written by `gaitid eval`: {exc}") from exc
    if not -1.0 <= threshold <= 1.0:
        raise ProtocolError(f"{path}: threshold {threshold} is not a cosine score in [-1, 1]")
    provenance = {
        "target_fmr": target,
        "calibrated_on": (
            f"{record.get('model', '?')}, subjects {','.join(record.get('subjects', []))}"
        ),
        "probes": record.get("probes", "silhouettes"),
        # calibrations older than the shift sets measured the network alone
        "test_time_shifts": record.get("test_time_shifts", "none"),
        "fnmr_at_threshold": record.get("at_threshold", {}).get("identity", {}).get("fnmr"),
    }
    if record.get("route_shift") is not None:
        provenance["route_shift"] = record["route_shift"]
    if (transfer := record.get("transfer")) is not None:  # `gaitid transfer-threshold`
        provenance["transfer"] = transfer
        provenance["calibrated_on"] = (
            f"carried from {transfer.get('reference', '?')} by the shift measured on "
            f"{transfer.get('shift_measured_on', '?')}"
        )
    return threshold, provenance
