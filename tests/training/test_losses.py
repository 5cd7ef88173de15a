"""Loss terms against brute-force references and OpenGait's semantics."""

from __future__ import annotations

import itertools

import pytest
import torch

from gaitid.training.losses import (
    batch_all_triplet,
    pairwise_euclidean,
    part_cross_entropy,
)


def _reference_triplet(features: torch.Tensor, labels: list[int], margin: float) -> float:
    """Loop over every (anchor, positive incl. itself, negative) per part; mean of non-zero."""
    per_part = []
    for p in range(features.shape[1]):
        x = features[:, p].double()
        losses = []
        for a, pos, neg in itertools.product(range(len(labels)), repeat=3):
            if labels[a] == labels[pos] and labels[a] != labels[neg]:
                d_ap = (x[a] - x[pos]).norm()
                d_an = (x[a] - x[neg]).norm()
                losses.append(max(float(d_ap - d_an + margin), 0.0))
        nonzero = [v for v in losses if v > 0]
        per_part.append(sum(nonzero) / len(nonzero) if nonzero else 0.0)
    return sum(per_part) / len(per_part)


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 2, 2, 2]])
def test_batch_all_triplet_matches_brute_force(labels: list[int]) -> None:
    torch.manual_seed(0)
    features = torch.randn(len(labels), 3, 4) * 0.3
    stats = batch_all_triplet(features, torch.tensor(labels), margin=0.2)
    assert stats.loss.item() == pytest.approx(_reference_triplet(features, labels, 0.2), rel=1e-4)


def test_triplet_is_zero_when_identities_are_far_apart() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    features = torch.tensor([[0.0], [0.01], [10.0], [10.01]]).unsqueeze(1)  # [N, P=1, D=1]
    stats = batch_all_triplet(features, labels, margin=0.2)
    assert stats.loss.item() == 0.0 and stats.active_fraction.item() == 0.0


def test_triplet_gradient_is_finite_for_identical_features() -> None:
    # all-equal features put every distance at 0: sqrt must not produce NaN gradients
    features = torch.zeros(4, 2, 3, requires_grad=True)
    stats = batch_all_triplet(features, torch.tensor([0, 0, 1, 1]), margin=0.2)
    stats.loss.backward()
    assert stats.loss.item() == pytest.approx(0.2, abs=1e-5)
    assert torch.isfinite(features.grad).all()


def test_pairwise_euclidean_matches_cdist() -> None:
    x = torch.randn(2, 5, 7)
    torch.testing.assert_close(pairwise_euclidean(x), torch.cdist(x, x), atol=1e-3, rtol=1e-4)


def test_part_cross_entropy_is_mean_over_parts() -> None:
    logits = torch.randn(4, 3, 5)
    labels = torch.tensor([0, 1, 2, 3])
    loss, accuracy = part_cross_entropy(logits, labels)
    expected = sum(torch.nn.functional.cross_entropy(logits[:, p], labels) for p in range(3)) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert 0.0 <= accuracy.item() <= 1.0


def test_shape_errors_name_the_shape() -> None:
    with pytest.raises(ValueError, match=r"\[N, P, D\]"):
        batch_all_triplet(torch.zeros(4, 3), torch.zeros(4), 0.2)
    with pytest.raises(ValueError, match=r"\[N, P, K\]"):
        part_cross_entropy(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
