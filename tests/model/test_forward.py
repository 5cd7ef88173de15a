"""Forward pass: shapes for every T, padding invariance, determinism, gradients, ablations."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from gaitid.contract import EMBEDDING_DIM
from gaitid.model import GaitOutput, create_model
from gaitid.model.lmgcs import InputShapeError
from tests.model.conftest import make_batch

NUM_CLASSES = 5

#: Every switch of the paper's ablations (Tables VIII-XIII) on the tiny network.
ABLATIONS: list[dict[str, Any]] = [
    {"lmfe": False, "branches": (1,), "fusion": "none", "gsfe": False},  # VIII baseline
    {"lmfe": False, "branches": (1,), "fusion": "none", "gsfe": True},  # X baseline + GSFE
    {"fusion": "none", "gsfe": False},  # VIII LMFE only
    {"fusion": "static", "gsfe": False},  # VIII LMFE + MFF
    {"fusion": "none", "gsfe": True},  # VIII LMFE + GSFE
    {"fusion": "static_reverse"},  # XI
    {"fusion": "attention"},  # XI
    *({"branches": b, "fusion": "none"} for b in [(1,), (3,), (5,)]),  # IX single branch
    *({"branches": b} for b in [(1, 3), (3, 5), (1, 5), (1, 5, 7), (3, 5, 7)]),  # IX, XIII
    {"enc_layers": 2, "dec_layers": 3},  # X depths
    {"embed_dim": 4},  # XII feature size
    {"local_strips": 0},  # E3D global-only
]


def _ids(overrides: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in overrides.items()).replace(" ", "")


@pytest.mark.parametrize("steps", [1, 2, 7, 30, 100])
def test_output_shapes_for_every_length(steps: int) -> None:
    torch.manual_seed(0)
    model = create_model("tiny", num_classes=NUM_CLASSES).eval()
    silhouettes, lengths = make_batch([steps, max(1, steps // 2)])
    with torch.no_grad():
        out = model(silhouettes, lengths)
    assert isinstance(out, GaitOutput)
    stripes, dim = model.config.num_stripes, model.embed_dim
    for features in (out.tri1_features, out.tri2_features, out.part_features):
        assert features.shape == (2, stripes, dim)
    assert out.logits is not None and out.logits.shape == (2, stripes, NUM_CLASSES)
    assert out.embedding.shape == (2, EMBEDDING_DIM)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2))
    assert all(torch.isfinite(t).all() for t in out if t is not None)


@pytest.mark.parametrize("overrides", [{}, {"fusion": "attention"}, {"gsfe": False}], ids=_ids)
def test_mixed_length_batch_matches_each_walk_alone(overrides: dict[str, Any]) -> None:
    torch.manual_seed(1)
    model = create_model("tiny", num_classes=NUM_CLASSES, **overrides).eval()
    walk_lengths = [1, 2, 7, 30, 13]
    silhouettes, lengths = make_batch(walk_lengths, seed=3)
    with torch.no_grad():
        batched = model(silhouettes, lengths)
        for i, length in enumerate(walk_lengths):
            alone = model(silhouettes[i : i + 1, :length], lengths[i : i + 1])
            for name in ("embedding", "part_features", "tri1_features", "logits"):
                torch.testing.assert_close(
                    getattr(alone, name)[0],
                    getattr(batched, name)[i],
                    atol=1e-5,
                    rtol=0,
                    msg=lambda m, n=name, ln=length: f"{n} of the {ln}-frame walk: {m}",
                )


def test_padding_content_is_ignored() -> None:
    """Whatever the padded frames hold, real walks' outputs do not change."""
    torch.manual_seed(2)
    model = create_model("tiny").eval()
    silhouettes, lengths = make_batch([4, 9], seed=4)
    noisy = silhouettes.clone()
    noisy[0, 4:] = torch.rand(5, *silhouettes.shape[2:])
    with torch.no_grad():
        torch.testing.assert_close(
            model(noisy, lengths).embedding,
            model(silhouettes, lengths).embedding,
            atol=1e-6,
            rtol=0,
        )


def test_eval_is_deterministic_and_train_mode_returns_the_same_type() -> None:
    torch.manual_seed(3)
    model = create_model("tiny", num_classes=NUM_CLASSES)
    silhouettes, lengths = make_batch([6, 3])
    model.train()
    assert isinstance(model(silhouettes, lengths), GaitOutput)
    model.eval()
    with torch.no_grad():
        first = model(silhouettes, lengths)
        second = model(silhouettes, lengths)
    for a, b in zip(first, second, strict=True):
        assert a is not None and b is not None
        assert torch.equal(a, b)


@pytest.mark.parametrize("overrides", ABLATIONS, ids=_ids)
def test_every_ablation_builds_runs_and_trains_every_parameter(overrides: dict[str, Any]) -> None:
    torch.manual_seed(4)
    model = create_model("tiny", num_classes=NUM_CLASSES, **overrides).train()
    silhouettes, lengths = make_batch([5, 3, 4, 2], seed=5)
    out = model(silhouettes, lengths)
    assert out.logits is not None
    assert out.part_features.shape[1] == model.config.num_stripes
    labels = torch.tensor([0, 1, 2, 3])
    loss = (
        out.tri1_features.square().mean()
        + out.tri2_features.square().mean()
        + torch.nn.functional.cross_entropy(
            out.logits.transpose(1, 2), labels[:, None].expand(4, out.logits.shape[1])
        )
        + out.embedding[:, :8].sum()
    )
    loss.backward()
    dead = [
        name
        for name, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    assert not dead, f"parameters without gradient: {dead}"


def test_forward_features_and_head_compose_to_forward() -> None:
    torch.manual_seed(5)
    model = create_model("tiny").eval()
    silhouettes, lengths = make_batch([3, 5])
    with torch.no_grad():
        composed = model.forward_head(model.forward_features(silhouettes, lengths))
        direct = model(silhouettes, lengths)
    assert composed.logits is None and direct.logits is None
    torch.testing.assert_close(composed.embedding, direct.embedding)


@pytest.mark.parametrize(
    ("shape", "lengths", "message"),
    [
        ((2, 5, 64, 64), [5, 5], "silhouettes must be"),
        ((2, 5, 64, 44), [5], "lengths must be \\[N\\]"),
        ((2, 5, 64, 44), [5, 0], "1..T=5"),
        ((2, 5, 64, 44), [6, 5], "1..T=5"),
    ],
)
def test_bad_inputs_are_refused(shape: tuple[int, ...], lengths: list[int], message: str) -> None:
    model = create_model("tiny").eval()
    with pytest.raises(InputShapeError, match=message):
        model(torch.zeros(shape), torch.tensor(lengths))


def test_lengths_must_be_int64() -> None:
    model = create_model("tiny").eval()
    with pytest.raises(InputShapeError, match="int64"):
        model(torch.zeros(1, 2, 64, 44), torch.tensor([2], dtype=torch.int32))


def test_static_fusion_is_a_cumulative_sum_of_branches() -> None:
    """Eq. 4 read as a sum: fused branch k = sum of branches 0..k (reverse: k..B-1)."""
    from gaitid.model.mff import MFF

    x = torch.randn(2, 3, 4, 5, 6)
    forward, reverse = MFF("static", 5, 3), MFF("static_reverse", 5, 3)
    for k in range(3):
        torch.testing.assert_close(forward(x)[:, k], x[:, : k + 1].sum(1))
        torch.testing.assert_close(reverse(x)[:, k], x[:, k:].sum(1))
    assert sum(p.numel() for p in forward.parameters()) == 0
