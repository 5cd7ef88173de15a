"""The architecture config: variants validate, impossible networks are refused by name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gaitid.model.config import VARIANTS, LMGCSConfig
from gaitid.model.registry import UnknownVariantError, create_model, resolve_config


def test_named_variants_exist_and_paper_matches_section_iv_b() -> None:
    assert set(VARIANTS) == {"paper", "paper-oumvlp", "lite", "tiny"}
    paper = VARIANTS["paper"]
    assert paper.channels == (32, 64, 128, 128)
    assert paper.branches == (1, 3, 5)
    assert (paper.enc_layers, paper.dec_layers) == (4, 4)
    assert paper.embed_dim == 256 and paper.fusion == "static" and paper.gsfe
    assert VARIANTS["paper-oumvlp"].channels == (64, 128, 256, 256)


def test_config_is_frozen_and_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="fusoin"):
        LMGCSConfig(fusoin="static")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        VARIANTS["tiny"].parts = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"embedding_dim": 128}, "fixed by the ONNX contract"),
        ({"parts": 5}, "parts=5 does not divide"),
        ({"local_strips": 3}, "local_strips=3 does not divide"),
        ({"local_strips": 1}, "0 \\(global only\\) or >= 2"),
        ({"branches": (1, 4)}, "odd"),
        ({"branches": (5, 3)}, "fine to coarse"),
        ({"branches": ()}, "at least one"),
        ({"branches": (3,), "fusion": "static"}, "single branch"),
        ({"lmfe": False}, "lmfe=False"),
        ({"heads": 3}, "heads=3 does not divide"),
        ({"pool_after": (0, 0)}, "distinct"),
        ({"pool_after": (4,)}, "0..3"),
        ({"fusion": "concat"}, "fusion"),
    ],
)
def test_impossible_configs_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        resolve_config("tiny", **overrides)


def test_unknown_variant_names_the_choices() -> None:
    with pytest.raises(UnknownVariantError, match="choose one of"):
        create_model("huge")


def test_num_classes_and_overrides_reach_the_model() -> None:
    model = create_model("tiny", num_classes=7, fusion="attention")
    assert model.config.num_classes == 7 and model.config.fusion == "attention"
    assert model.embed_dim == VARIANTS["tiny"].embed_dim


def test_hpp_reading_per_variant() -> None:
    """Issue 18: `paper` concatenates GAP and GMP over 16 parts; the shipped `lite` sums."""
    assert (VARIANTS["paper"].hpp, VARIANTS["paper"].parts) == ("concat", 16)
    assert VARIANTS["paper"].feature_channels == 256
    assert VARIANTS["paper-oumvlp"].feature_channels == 512
    assert (VARIANTS["lite"].hpp, VARIANTS["lite"].parts) == ("sum", 16)
    # a config saved before the field existed loads with the reading it was trained with
    saved = VARIANTS["lite"].model_dump()
    del saved["hpp"]
    assert LMGCSConfig.model_validate(saved) == VARIANTS["lite"]


def test_saved_configs_with_the_old_embedding_dim_field_still_load() -> None:
    """Issue 16: ``embedding_dim`` is no setting (the contract fixes it); old dumps load."""
    saved = {**VARIANTS["lite"].model_dump(), "embedding_dim": 256}
    assert LMGCSConfig.model_validate(saved) == VARIANTS["lite"]
    assert "embedding_dim" not in VARIANTS["lite"].model_dump()
    assert VARIANTS["lite"].embedding_dim == 256
