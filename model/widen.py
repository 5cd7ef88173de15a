"""Grow a trained network's inner backbone widths, keeping what it computes (Net2WiderNet).

Every continuation of the shipped ``lite`` weights on CPU fitted the 62 training identities
better without gaining on unseen people, and the notes kept naming a larger network as the
next lever; a larger network trained from scratch cannot reach the shipped one's iterations on
two cores. Widening starts the larger network *at* the trained one: each new channel of an E3D
layer is a copy of an existing one (its incoming weights copied), and the next layer's weights
on the copies are split between them, so the wide network's output equals the narrow one's.

Only the three inner widths (outputs of E3D layers 0-2) are grown. The last E3D width is the
part feature width that HPP, LMFE, GSFE (whose LayerNorm would see duplicated channels), the
FC heads and the embedding head all read; changing it would not keep the function.

Why exact: layer 0 is ``leaky_relu(conv(x))`` and layers 1-3 are
``leaky_relu(global(x)) + leaky_relu(local(x))``, applied per output channel; the spatial max
pool and the padded-frame zeroing are per channel too. A copied channel therefore carries the
same values as its source, and a next-layer weight split into shares that sum to one adds back
to the original.

Symmetry: a copy and its source start identical and get gradients that differ only by their
shares of the next layer's weights; they separate only as those weights drift (Adam's updates
are additive, not proportional to the shares). As Net2Net does, the copies' incoming weights
get a little noise (``noise`` times the layer's weight standard deviation) so that they differ
from the first step; it moves the output by a small amount that the tests bound, and
``noise=0`` is exact.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gaitid.errors import GaitidError
from gaitid.model.config import LMGCSConfig

#: The E3D layers whose output width may grow (the last one's may not; see the module doc).
INNER_LAYERS = (0, 1, 2)


class WidenError(GaitidError, ValueError):
    """The two configs do not differ only by wider inner backbone layers."""


def _layer_weights(state: dict[str, Tensor], layer: int) -> list[str]:
    """Keys of E3D layer ``layer``'s convolutions in ``state`` (the local one only with strips)."""
    if layer == 0:
        return ["backbone.layers.0.weight"]
    keys = [f"backbone.layers.{layer}.{conv}.weight" for conv in ("global_conv", "local_conv")]
    return [key for key in keys if key in state]


def check_widening(narrow: LMGCSConfig, wide: LMGCSConfig) -> None:
    """Refuse configs that differ in anything but grown inner widths."""
    # the classifier's size is the run's business (init.new_modules, init.keep_identities)
    free = {"channels", "num_classes"}
    same = narrow.model_dump(exclude=free) == wide.model_dump(exclude=free)
    last_equal = narrow.channels[-1] == wide.channels[-1]
    grown = all(w >= n for n, w in zip(narrow.channels, wide.channels, strict=True))
    if not (same and last_equal and grown):
        raise WidenError(
            f"can only grow the inner backbone widths of the same network: channels "
            f"{narrow.channels} -> {wide.channels} with the last width unchanged and every other "
            "setting equal"
        )


def widen_state_dict(
    state: dict[str, Tensor],
    narrow: LMGCSConfig,
    wide: LMGCSConfig,
    *,
    noise: float = 0.01,
    seed: int = 0,
) -> dict[str, Tensor]:
    """``state`` of a ``narrow`` network -> the state of a ``wide`` one computing the same.

    Each new channel copies a source channel drawn at random (every source at most once more
    than any other), and the next layer's input weights on a source and its copies are split in
    random positive shares summing to one. ``noise`` perturbs the copies' incoming weights
    (relative to the layer's weight std) so that training can tell them apart.
    """
    check_widening(narrow, wide)
    generator = torch.Generator().manual_seed(seed)
    out = {key: value.clone() for key, value in state.items()}
    for layer in INNER_LAYERS:
        old, new = narrow.channels[layer], wide.channels[layer]
        if new == old:
            continue
        extra = new - old
        # sources of the new channels: whole rounds of a random order, so copies spread evenly
        rounds = [torch.randperm(old, generator=generator) for _ in range(-(-extra // old))]
        sources = torch.cat(rounds)[:extra]
        mapping = torch.cat([torch.arange(old), sources])  # wide channel -> narrow channel
        for key in _layer_weights(out, layer):
            weight = out[key]
            grown = weight[mapping].clone()
            if noise > 0:
                scale = noise * float(weight.float().std())
                jitter = torch.randn(grown[old:].shape, generator=generator) * scale
                grown[old:] += jitter.to(grown.dtype)
            out[key] = grown
        shares = torch.rand(new, generator=generator) + 0.5  # in [0.5, 1.5): no tiny share
        totals = torch.zeros(old).index_add_(0, mapping, shares)
        shares = shares / totals[mapping]
        for key in _layer_weights(out, layer + 1):
            weight = out[key]
            split = weight[:, mapping] * shares.view(1, -1, 1, 1, 1).to(weight.dtype)
            out[key] = split.contiguous()
    return out
