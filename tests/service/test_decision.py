"""The one match/unknown rule of identify and verify (``service.common.decide``)."""

from __future__ import annotations

import pytest

from gaitid.service.common import decide


@pytest.mark.parametrize(
    ("requested", "gallery", "model", "expected"),
    [
        (0.9, 0.8, 0.7, (0.9, "request")),
        (None, 0.8, 0.7, (0.8, "gallery")),
        (None, None, 0.7, (0.7, "model")),
        (None, None, None, (0.5, "fallback")),
        (0.0, 0.8, 0.7, (0.0, "request")),  # a zero threshold is a threshold, not a gap
    ],
)
def test_threshold_precedence(
    requested: float | None,
    gallery: float | None,
    model: float | None,
    expected: tuple[float, str],
) -> None:
    decision = decide(0.6, requested, gallery, model, 0.5)
    assert (decision.threshold, decision.source) == expected


@pytest.mark.parametrize(
    ("score", "match", "label"),
    [
        (0.71, True, "match"),
        (0.7, True, "match"),
        (0.69, False, "unknown"),
        (None, False, "unknown"),
    ],
)
def test_a_score_equal_to_the_threshold_matches(
    score: float | None, match: bool, label: str
) -> None:
    decision = decide(score, 0.7, None, None, 0.5)
    assert (decision.match, decision.label) == (match, label)
