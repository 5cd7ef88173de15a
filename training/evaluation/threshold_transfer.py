"""Carry a calibrated decision threshold over to a derived model (int8), or to another input
route (camera clips), by its measured shift.

A shipped threshold is calibrated on walks of people the model never saw (the validation run;
``models/README.md``). A model derived from it afterwards, such as its int8 quantisation, has
no such walks left to calibrate on, yet its scores are not exactly the fp32 model's: an
unchanged threshold would drift in FMR by however much the derived scores moved. This module
measures that move on the same walks for both models, as the threshold each reaches at the
target FMR under the ``identity`` regime (``open_set``), and shifts the calibrated threshold by
the difference. The walks need not be unseen ones: the shift compares two models on identical
inputs, which is what quantisation changes.

The same measurement calibrates the camera-clip route (``measure_route_shift``,
``route_threshold``): the clip readings of held-out walks and the *same* walks' clean
silhouettes, each against one clean gallery, give two FMR thresholds whose difference is what
the route does to impostor scores. A threshold found on the clip readings alone is not that:
the route reads only some of the walks (no frontal clips), and those walks' impostor scores
differ from the whole set's whatever the route. On the shipped model's held-out walks (647
clip readings) the readings' own threshold is 0.5286 and the same walks' clean silhouettes
reach 0.5254, against 0.5225 for every clean walk: the route itself moves the threshold by
+0.0032, half of what comparing the readings with all clean walks suggests
(``models/README.md``, "Camera clips: the route's threshold").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaitid.training.evaluation.open_set import threshold_at_fmr, verification_scores
from gaitid.training.evaluation.protocols import CASIA_B_GALLERY, FeatureSet, ProtocolError


def _as_cosine(score: float) -> float:
    """``score`` kept inside the cosine range [-1, 1] a threshold must lie in."""
    return min(1.0, max(-1.0, score))


@dataclass(frozen=True)
class ThresholdTransfer:
    """The derived model's threshold and the measurements it rests on."""

    threshold: float
    calibrated: float  # the reference model's shipped threshold
    reference_at_fmr: float  # the reference's threshold at the target FMR on these walks
    derived_at_fmr: float  # the derived model's, same walks, same FMR
    target_fmr: float
    impostor_scores: int
    subjects: tuple[str, ...] = ()  # whose walks the shift was measured on

    @property
    def shift(self) -> float:
        return self.derived_at_fmr - self.reference_at_fmr

    def moved(self, threshold: float) -> float:
        """Another threshold of the reference (e.g. its clip threshold) moved by this shift."""
        return _as_cosine(threshold + self.shift)

    def provenance(
        self, walks: str, carried: str | None, *, reference: str = "float32"
    ) -> dict[str, Any]:
        """The derived model's ``threshold_calibration`` record (JSON in its metadata):
        this transfer, and ``carried``, the reference's own record, kept as it was.
        ``reference`` names the reference model in the keys (``float32`` for int8 files)."""
        record: dict[str, Any] = {
            "target_fmr": self.target_fmr,
            f"transferred_from_{reference}": self.calibrated,
            "shift": round(self.shift, 6),
            "shift_measured_on": walks,
            f"{reference}_threshold_at_fmr": round(self.reference_at_fmr, 6),
            "derived_threshold_at_fmr": round(self.derived_at_fmr, 6),
            "impostor_scores": self.impostor_scores,
        }
        if carried:
            try:
                record[f"{reference}_calibration"] = json.loads(carried)
            except ValueError:
                record[f"{reference}_calibration"] = carried
        return record

    def describe(self, walks: str, *, reference: str = "float32") -> str:
        """One line saying what was done, for a person (``reference`` names the model the
        threshold came from)."""
        return (
            f"{self.calibrated:.4f} of the {reference} model shifted by {self.shift:+.4f}, the "
            f"move of the FMR <= {self.target_fmr:g} threshold (identity regime, "
            f"{self.impostor_scores} impostor scores) from {reference} to this model on {walks} "
            f"({self.reference_at_fmr:.4f} -> {self.derived_at_fmr:.4f})"
        )


@dataclass(frozen=True)
class RouteShift:
    """How a second input route moves the FMR threshold of one model, walk for walk."""

    silhouettes_at_fmr: float  # threshold at the target FMR of the walks' clean silhouettes
    route_at_fmr: float  # the same walks read by the route, same gallery, same FMR
    target_fmr: float
    impostor_scores: int
    probe_walks: int

    @property
    def shift(self) -> float:
        return self.route_at_fmr - self.silhouettes_at_fmr

    def as_record(self) -> dict[str, Any]:
        return {
            "shift": round(self.shift, 6),
            "silhouettes_at_fmr": round(self.silhouettes_at_fmr, 6),
            "route_at_fmr": round(self.route_at_fmr, 6),
            "target_fmr": self.target_fmr,
            "impostor_scores": self.impostor_scores,
            "probe_walks": self.probe_walks,
        }


def measure_route_shift(
    silhouettes: FeatureSet, route: FeatureSet, *, target_fmr: float = 1e-3
) -> RouteShift:
    """The move of the ``target_fmr`` threshold from the probe walks' clean silhouettes to the
    route's reading of the same walks (both feature sets: one gallery, the same walks in the
    same order)."""
    measured = transfer_threshold(silhouettes, route, 0.0, target_fmr=target_fmr)
    probes = int(np.sum(~np.isin(route.conditions, CASIA_B_GALLERY)))
    return RouteShift(
        silhouettes_at_fmr=measured.reference_at_fmr,
        route_at_fmr=measured.derived_at_fmr,
        target_fmr=target_fmr,
        impostor_scores=measured.impostor_scores,
        probe_walks=probes,
    )


def route_threshold(default_threshold: float, record: Mapping[str, Any]) -> float:
    """The route's threshold: the calibrated (clean) threshold moved by a ``RouteShift`` record
    (``as_record``), so the route keeps the false-match rate the clean one was calibrated to."""
    try:
        shift = float(record["shift"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"not a route-shift record: {exc}") from exc
    return _as_cosine(default_threshold + shift)


def transfer_threshold(
    reference: FeatureSet,
    derived: FeatureSet,
    calibrated: float,
    *,
    target_fmr: float = 1e-3,
) -> ThresholdTransfer:
    """Shift ``calibrated`` (the reference model's threshold) by how far the derived model's
    threshold at ``target_fmr`` lies from the reference's on the same walks."""
    if not 0 < target_fmr < 1:
        raise ProtocolError(f"target FMR must be in (0, 1), got {target_fmr}")
    for name in ("subjects", "conditions", "views"):
        if not np.array_equal(getattr(reference, name), getattr(derived, name)):
            raise ProtocolError("the two feature sets must embed the same walks in the same order")
    reference_scores = verification_scores(reference)["identity"].impostor
    derived_scores = verification_scores(derived)["identity"].impostor
    reference_at = threshold_at_fmr(reference_scores, target_fmr)
    derived_at = threshold_at_fmr(derived_scores, target_fmr)
    threshold = _as_cosine(calibrated + derived_at - reference_at)
    return ThresholdTransfer(
        threshold=threshold,
        calibrated=calibrated,
        reference_at_fmr=reference_at,
        derived_at_fmr=derived_at,
        target_fmr=target_fmr,
        impostor_scores=int(reference_scores.size),
        subjects=tuple(str(s) for s in np.unique(reference.subjects)),
    )
