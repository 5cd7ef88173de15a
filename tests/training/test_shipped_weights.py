"""The shipped PyTorch weights: loadable for fine-tuning, the same network as the ONNX model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES, OUTPUT_EMBEDDING, batch_sequences
from gaitid.service.config import SHIPPED_MODEL
from tests.utils.nested import strings_in

WEIGHTS = SHIPPED_MODEL.with_suffix(".pt")


@pytest.fixture(scope="module")
def shipped() -> tuple[Any, dict[str, Any]]:
    """The shipped weights loaded once, as ``(model, checkpoint state)``, for every test here."""
    from gaitid.model.export import load_checkpoint_model

    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 50 * 1024 * 1024
    return load_checkpoint_model(WEIGHTS)


def test_shipped_weights_match_the_shipped_onnx_model(shipped: tuple[Any, dict[str, Any]]) -> None:
    import onnxruntime as ort
    import torch

    from gaitid.contract import read_metadata
    from gaitid.training.evaluation.extract import torch_features

    model, state = shipped
    assert "optimizer" not in state and "rng" not in state
    assert not [s for s in strings_in(state) if Path(s).is_absolute()]
    assert model.embedding_head.is_fitted and state["num_classes"] == 62
    rng = np.random.default_rng(1)
    walks = [(rng.random((t, 64, 44)) > 0.5).astype(np.uint8) * 255 for t in (12, 33)]
    silhouettes, lengths = batch_sequences(walks)
    session = ort.InferenceSession(str(SHIPPED_MODEL), providers=["CPUExecutionProvider"])
    (onnx_emb,) = session.run(
        [OUTPUT_EMBEDDING], {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}
    )
    # the ONNX graph averages the shift set the weights record (the PyTorch evaluation's)
    shifts = state["meta"]["test_time_shifts"]
    assert shifts == read_metadata(session.get_modelmeta().custom_metadata_map).test_time_shifts
    embeddings, _parts = torch_features(model, walks, device=torch.device("cpu"), shifts=shifts)
    np.testing.assert_allclose(onnx_emb, embeddings, atol=1e-4)


def test_the_shipped_weights_continue_under_their_own_recipe(
    shipped: tuple[Any, dict[str, Any]],
) -> None:
    """`gaitid train configs/casia-b-lite-clip-walks.yaml --init models/gaitid-lmgcs.pt
    --seed N` trains the shipped weights further on the same identities: every weight, the
    classifier too, must fit the recipe's network, and the recipe the weights record must be
    that file's, or a continued model would be a different experiment."""
    from gaitid.model import create_model
    from gaitid.training.config import load_config

    recipe = load_config(WEIGHTS.parents[1] / "configs" / "casia-b-lite-clip-walks.yaml")
    assert recipe.data.partition is not None and recipe.init is None
    identities = json.loads(recipe.data.partition.read_text())["TRAIN_SET"]
    _, state = shipped
    assert state["num_classes"] == len(identities)
    network = create_model(recipe.model.variant, num_classes=len(identities))
    network.load_state_dict(state["model"])
    saved = state["recipe"]
    for section in ("model", "sampler", "optimizer", "loss", "embedding"):
        assert saved[section] == getattr(recipe, section).model_dump(mode="json"), section
    assert saved["data"]["frames"] == recipe.data.frames
    # trained with clip readings, whose folder (a path on the training machine) is left out
    assert recipe.data.clip_walks is not None and "clip_walks" not in saved["data"]
    assert saved["name"] == recipe.name
