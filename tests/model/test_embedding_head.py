"""The fixed 256-d embedding head: part-normalised, centred, reduced, unit length."""

from __future__ import annotations

import pytest
import torch

from gaitid.model.embedding_head import EmbeddingHead


def test_unfitted_head_is_a_seeded_orthonormal_projection() -> None:
    a, b = EmbeddingHead(6, 64, 256), EmbeddingHead(6, 64, 256)
    assert torch.equal(a.weight, b.weight) and not a.is_fitted
    torch.testing.assert_close(a.weight.T @ a.weight, torch.eye(256), atol=1e-5, rtol=0)
    out = a(torch.randn(5, 6, 64))
    assert out.shape == (5, 256)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


def test_each_part_counts_equally_whatever_its_scale() -> None:
    """Scaling one part's feature changes nothing: parts are unit-normalised first, as each
    part contributes one distance to the part-wise metric."""
    head = EmbeddingHead(4, 8, 16)
    head.set_reduction(torch.randn(32), torch.randn(32, 16))
    x = torch.randn(3, 4, 8)
    scaled = x.clone()
    scaled[:, 2] *= 50.0
    torch.testing.assert_close(head(x), head(scaled))


def test_fitted_reduction_is_applied_and_kept_in_the_state_dict() -> None:
    head = EmbeddingHead(2, 3, 4)
    mean, weight = torch.randn(6), torch.randn(6, 4)
    head.set_reduction(mean, weight)
    x = torch.randn(5, 2, 3)
    flat = torch.nn.functional.normalize(x, dim=-1).flatten(1)
    expected = torch.nn.functional.normalize((flat - mean) @ weight, dim=1)
    torch.testing.assert_close(head(x), expected)
    restored = EmbeddingHead(2, 3, 4)
    restored.load_state_dict(head.state_dict())
    assert restored.is_fitted and torch.equal(restored(x), head(x))


@pytest.mark.parametrize(
    ("mean", "weight", "message"),
    [
        (torch.zeros(5), torch.zeros(6, 4), "mean \\[6\\]"),
        (torch.zeros(6), torch.zeros(4, 6), "weight \\[6, 4\\]"),
        (torch.zeros(6), torch.full((6, 4), float("nan")), "non-finite"),
    ],
)
def test_bad_reductions_are_refused(mean: torch.Tensor, weight: torch.Tensor, message: str) -> None:
    head = EmbeddingHead(2, 3, 4)
    with pytest.raises(ValueError, match=message):
        head.set_reduction(mean, weight)
    assert not head.is_fitted
