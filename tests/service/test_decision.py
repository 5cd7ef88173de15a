"""The one match/unknown rule of identify and verify (``service.common.decide``)."""

from __future__ import annotations

import pytest

from gaitid.contract import ContractMetadata
from gaitid.service.common import decide
from gaitid.service.schemas import ThresholdRoute


def _model(default: float | None = None, clip: float | None = None) -> ContractMetadata:
    return ContractMetadata(
        name="lmgcs",
        variant="tiny",
        version="1",
        embedding_dim=256,
        input_size="64x44",
        metric="cosine",
        training_data="test",
        default_threshold=default,
        clip_threshold=clip,
    )


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
    decision = decide(0.6, requested, gallery, _model(model), 0.5, "silhouettes")
    assert (decision.threshold, decision.source) == expected


@pytest.mark.parametrize(
    ("route", "default", "clip", "expected"),
    [
        ("silhouettes", 0.7, 0.6, (0.7, "model")),  # silhouettes never use the clip threshold
        ("clip", 0.7, 0.6, (0.6, "model")),
        ("clip", 0.7, None, (0.7, "model")),  # a model without one holds clips to its default
        ("clip", None, 0.6, (0.6, "model")),
        ("silhouettes", None, 0.6, (0.5, "fallback")),
        ("clip", None, None, (0.5, "fallback")),
    ],
)
def test_the_models_threshold_follows_the_input_route(
    route: ThresholdRoute,
    default: float | None,
    clip: float | None,
    expected: tuple[float, str],
) -> None:
    score = 0.65
    decision = decide(score, None, None, _model(default, clip), 0.5, route)
    assert (decision.threshold, decision.source, decision.route) == (*expected, route)
    assert decision.match == (score >= expected[0])


@pytest.mark.parametrize("route", ["silhouettes", "clip"])
def test_request_and_gallery_thresholds_win_over_the_clip_calibration(
    route: ThresholdRoute,
) -> None:
    model = _model(0.7, 0.2)
    request = decide(0.3, 0.9, 0.8, model, 0.5, route)
    gallery = decide(0.3, None, 0.8, model, 0.5, route)
    assert (request.threshold, request.source, request.route, request.match) == (
        0.9,
        "request",
        route,
        False,
    )
    assert (gallery.threshold, gallery.source, gallery.route) == (0.8, "gallery", route)


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
    decision = decide(score, 0.7, None, _model(), 0.5, "clip")
    assert (decision.match, decision.label) == (match, label)
