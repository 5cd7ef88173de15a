"""Growing the inner backbone widths keeps what a trained network computes (model/widen.py)."""

from __future__ import annotations

import pytest
import torch

from gaitid.model import create_model
from gaitid.model.registry import resolve_config
from gaitid.model.widen import WidenError, widen_state_dict

NARROW = (4, 6, 8, 8)
WIDE = (6, 13, 12, 8)  # layer 1 more than doubles: some channels get two copies


def _walks() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    silhouettes = (torch.rand(3, 9, 64, 44, generator=generator) > 0.6).float()
    lengths = torch.tensor([9, 5, 2])  # padded walks: the zeroed frames must stay zero
    return silhouettes, lengths


def _pair(noise: float, local_strips: int = 4) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    narrow = create_model("tiny", num_classes=5, channels=NARROW, local_strips=local_strips)
    wide = create_model("tiny", num_classes=5, channels=WIDE, local_strips=local_strips)
    state = widen_state_dict(narrow.state_dict(), narrow.config, wide.config, noise=noise)
    wide.load_state_dict(state)
    return narrow.eval(), wide.eval()


@pytest.mark.parametrize("local_strips", [4, 0])
def test_widening_without_noise_computes_the_same(local_strips: int) -> None:
    narrow, wide = _pair(noise=0.0, local_strips=local_strips)
    silhouettes, lengths = _walks()
    with torch.no_grad():
        before, after = narrow(silhouettes, lengths), wide(silhouettes, lengths)
    torch.testing.assert_close(after.part_features, before.part_features, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(after.logits, before.logits, rtol=1e-4, atol=1e-4)


def test_noise_moves_the_output_a_little_and_tells_the_copies_apart() -> None:
    narrow, wide = _pair(noise=0.01)
    silhouettes, lengths = _walks()
    with torch.no_grad():
        before, after = narrow(silhouettes, lengths), wide(silhouettes, lengths)
    change = (after.part_features - before.part_features).norm() / before.part_features.norm()
    assert 0 < float(change) < 0.05
    first = wide.backbone.layers[0].weight
    copies = first[NARROW[0] :].flatten(1)
    assert not any(torch.equal(copy, source) for copy in copies for source in first[: NARROW[0]])


def _copy_distance(wide: torch.nn.Module) -> float:
    """How far layer 0's copied channels are from the nearest original channel."""
    weight = wide.backbone.layers[0].weight.detach().flatten(1)
    return float(torch.cdist(weight[NARROW[0] :], weight[: NARROW[0]]).min(dim=1).values.min())


def _train_briefly(wide: torch.nn.Module) -> None:
    wide.train()
    optimizer = torch.optim.Adam(wide.parameters(), lr=1e-2)
    silhouettes, lengths = _walks()
    for _ in range(3):
        loss = wide(silhouettes, lengths).part_features.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_copies_train_apart_from_their_sources() -> None:
    _, exact = _pair(noise=0.0)
    assert _copy_distance(exact) == 0
    _train_briefly(exact)
    assert _copy_distance(exact) > 1e-5  # the split next-layer weights tell them apart

    _, noisy = _pair(noise=0.01)
    before = _copy_distance(noisy)
    assert before > 0
    _train_briefly(noisy)
    assert _copy_distance(noisy) > before


@pytest.mark.parametrize(
    ("wide", "why"),
    [((4, 6, 8, 12), "last width"), ((2, 6, 8, 8), "narrower"), ((4, 6, 8, 8), None)],
)
def test_only_grown_inner_widths_are_accepted(wide: tuple[int, ...], why: str | None) -> None:
    narrow = resolve_config("tiny", channels=NARROW)
    target = resolve_config("tiny", channels=wide)
    state = create_model(narrow).state_dict()
    if why is None:  # equal widths: nothing to grow, the same weights
        out = widen_state_dict(state, narrow, target)
        assert all(torch.equal(out[k], v) for k, v in state.items())
        return
    with pytest.raises(WidenError, match="inner backbone widths"):
        widen_state_dict(state, narrow, target)


def test_another_setting_than_the_widths_is_refused() -> None:
    narrow = resolve_config("tiny", channels=NARROW)
    other = resolve_config("tiny", channels=WIDE, fusion="none", branches=(1,))
    with pytest.raises(WidenError):
        widen_state_dict(create_model(narrow).state_dict(), narrow, other)
