"""Carry a calibrated decision threshold over to a derived model (int8) by its measured shift.

A shipped threshold is calibrated on walks of people the model never saw (the validation run;
``models/README.md``). A model derived from it afterwards, such as its int8 quantisation, has
no such walks left to calibrate on, yet its scores are not exactly the fp32 model's: an
unchanged threshold would drift in FMR by however much the derived scores moved. This module
measures that move on the same walks for both models, as the threshold each reaches at the
target FMR under the ``identity`` regime (``open_set``), and shifts the calibrated threshold by
the difference. The walks need not be unseen ones: the shift compares two models on identical
inputs, which is what quantisation changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from gaitid.training.evaluation.open_set import threshold_at_fmr, verification_scores
from gaitid.training.evaluation.protocols import FeatureSet, ProtocolError


@dataclass(frozen=True)
class ThresholdTransfer:
    """The derived model's threshold and the measurements it rests on."""

    threshold: float
    calibrated: float  # the reference model's shipped threshold
    reference_at_fmr: float  # the reference's threshold at the target FMR on these walks
    derived_at_fmr: float  # the derived model's, same walks, same FMR
    target_fmr: float
    impostor_scores: int

    @property
    def shift(self) -> float:
        return self.derived_at_fmr - self.reference_at_fmr

    def provenance(self, walks: str, carried: str | None) -> dict[str, Any]:
        """The derived model's ``threshold_calibration`` record (JSON in its metadata):
        this transfer, and ``carried``, the reference's own record, kept as it was."""
        record: dict[str, Any] = {
            "target_fmr": self.target_fmr,
            "transferred_from_float32": self.calibrated,
            "shift": round(self.shift, 6),
            "shift_measured_on": walks,
            "float32_threshold_at_fmr": round(self.reference_at_fmr, 6),
            "derived_threshold_at_fmr": round(self.derived_at_fmr, 6),
            "impostor_scores": self.impostor_scores,
        }
        if carried:
            try:
                record["float32_calibration"] = json.loads(carried)
            except ValueError:
                record["float32_calibration"] = carried
        return record

    def describe(self, walks: str) -> str:
        """One line saying what was done, for a person."""
        return (
            f"{self.calibrated:.4f} of the float32 model shifted by {self.shift:+.4f}, the move "
            f"of the FMR <= {self.target_fmr:g} threshold (identity regime, "
            f"{self.impostor_scores} impostor scores) from float32 to this model on {walks} "
            f"({self.reference_at_fmr:.4f} -> {self.derived_at_fmr:.4f})"
        )


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
    threshold = min(1.0, max(-1.0, calibrated + derived_at - reference_at))
    return ThresholdTransfer(
        threshold=threshold,
        calibrated=calibrated,
        reference_at_fmr=reference_at,
        derived_at_fmr=derived_at,
        target_fmr=target_fmr,
        impostor_scores=int(reference_scores.size),
    )
