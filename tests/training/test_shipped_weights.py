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
    with torch.inference_mode():
        out = model(torch.from_numpy(silhouettes), torch.from_numpy(lengths))
    np.testing.assert_allclose(onnx_emb, out.embedding.numpy(), atol=1e-4)


def test_the_continue_config_is_the_shipped_recipe_starting_from_the_shipped_weights(
    shipped: tuple[Any, dict[str, Any]],
) -> None:
    """`configs/casia-b-lite-cpu-continue.yaml` trains the shipped weights further on the same
    identities, so every weight, the classifier too, must load; and it must stay the recipe the
    card describes, or a continued model would be a different experiment."""
    from gaitid.training.config import load_config

    configs = WEIGHTS.parents[1] / "configs"
    recipe = load_config(configs / "casia-b-lite-cpu.yaml")
    continued = load_config(configs / "casia-b-lite-cpu-continue.yaml")
    assert continued.init is not None and continued.init.checkpoint == WEIGHTS.resolve()
    assert continued.init.new_modules == [] and continued.init.freeze == []
    for section in ("data", "model", "sampler", "optimizer", "schedule", "loss", "embedding"):
        assert getattr(continued, section) == getattr(recipe, section), section
    assert continued.trainer == recipe.trainer and continued.seed != recipe.seed
    assert continued.data.partition is not None
    identities = json.loads(continued.data.partition.read_text())["TRAIN_SET"]
    _, state = shipped
    assert state["num_classes"] == len(identities)
