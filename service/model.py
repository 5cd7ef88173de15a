"""The loaded model as an operator sees it (``/model``): what it is, which threshold decides
by default and where that comes from, and the DET picture of its model card.

The DET picture ships beside the model file, named after it: the file name up to its first
``.`` plus ``-det.png`` (``models/gaitid-lmgcs.onnx`` and its int8 sibling
``gaitid-lmgcs.int8.onnx`` share ``models/gaitid-lmgcs-det.png``, the curves of the card in
``models/README.md``). It is looked up next to the file the service loaded, so a mounted
model folder brings its own picture and a model without one answers 404.
"""

from __future__ import annotations

from pathlib import Path

from gaitid.service.common import decide
from gaitid.service.errors import NotFoundError
from gaitid.service.schemas import ModelResponse
from gaitid.service.state import ServiceState

DET_SUFFIX = "-det.png"


def det_picture_path(model_path: Path) -> Path:
    """Where the DET picture of the model at ``model_path`` ships."""
    return model_path.with_name(model_path.name.split(".", 1)[0] + DET_SUFFIX)


def describe(state: ServiceState) -> ModelResponse:
    """The model's identity and its default threshold (the rule of ``common.decide`` for a
    silhouette upload without a request's or a gallery's threshold), and the threshold it
    carries for camera clips, if any."""
    info = state.model
    default = decide(None, None, None, info, state.settings.fallback_threshold, "silhouettes")
    assert default.source in ("model", "fallback")  # no request, no gallery
    return ModelResponse(
        name=info.name,
        variant=info.variant,
        version=info.version,
        sha256=info.sha256,
        embedding_dim=info.embedding_dim,
        threshold=default.threshold,
        threshold_source=default.source,
        clip_threshold=info.clip_threshold,
        training_data=info.training_data,
        test_time_shifts=info.test_time_shifts,
        det_picture=det_picture_path(state.embedder.model_path).is_file(),
    )


def det_picture(state: ServiceState) -> bytes:
    """The PNG bytes of the model's DET picture; 404 when it does not ship with the model."""
    path = det_picture_path(state.embedder.model_path)
    if not path.is_file():
        raise NotFoundError(
            f"no DET picture ships with the model {state.embedder.model_path.name} "
            f"(expected {path.name} beside it)"
        )
    return path.read_bytes()
