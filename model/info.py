"""Parameter and FLOP accounting per component, beside the paper's Table IX.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``: convolutions and matrix
products only, one multiply-add = 2 FLOPs (so MACs = FLOPs / 2). Element-wise work
(activations, pooling, softmax, LayerNorm) is not counted, as in most papers' counters.
Counted for one walk (N = 1) of ``frames`` frames.

The paper's Table IX reports 16.82 M parameters and 2.60 GFLOPs at (we assume) 30 frames,
without naming its counter; tools such as thop/ptflops report MACs under the name FLOPs and
skip attention matmuls, so the paper figure is best compared with our MACs of E3D alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from gaitid.contract import FRAME_HEIGHT, FRAME_WIDTH
from model.config import LMGCSConfig
from model.lmgcs import LMGCS

#: Table IX, all three branches (CASIA-B LT, RTX 3090).
PAPER_PARAMS_M = 16.82
PAPER_GFLOPS = 2.60
#: CASIA-B LT trains on 74 subjects: the classifier size the paper's count includes.
PAPER_NUM_CLASSES = 74
COMPONENTS = ("backbone", "lmfe", "mff", "gsfe", "fc", "bnneck", "embedding_head")


@dataclass(frozen=True)
class ComponentCost:
    """Parameters and FLOPs of one named part of the network."""

    name: str
    params: int  # trainable parameters
    flops: int
    constants: int = 0  # fixed fitted values (the embedding head's mean and reduction matrix)


@dataclass(frozen=True)
class ModelInfo:
    """The whole accounting of one config at one sequence length."""

    variant: str
    frames: int
    num_classes: int
    components: tuple[ComponentCost, ...]

    @property
    def params(self) -> int:
        return sum(c.params for c in self.components)

    @property
    def flops(self) -> int:
        return sum(c.flops for c in self.components)

    @property
    def constants(self) -> int:
        return sum(c.constants for c in self.components)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form, with totals and the paper's reference numbers."""
        return {
            **asdict(self),
            "total_params": self.params,
            "total_constants": self.constants,
            "total_flops": self.flops,
            "total_macs": self.flops // 2,
            "paper_table_ix": {"params_m": PAPER_PARAMS_M, "gflops": PAPER_GFLOPS},
        }


def count_flops(model: LMGCS, frames: int, batch: int = 1) -> dict[str, int]:
    """FLOPs of one eval forward pass, per top-level component name."""
    silhouettes = torch.rand(batch, frames, FRAME_HEIGHT, FRAME_WIDTH)
    lengths = torch.full((batch,), frames, dtype=torch.int64)
    counter = FlopCounterMode(display=False, depth=2)
    was_training = model.training
    model.eval()
    try:
        with counter, torch.no_grad():
            model(silhouettes, lengths)
    finally:
        model.train(was_training)
    per_module = counter.get_flop_counts()
    prefix = type(model).__name__ + "."
    flops: dict[str, int] = {}
    for name, ops in per_module.items():
        if name.startswith(prefix) and name.count(".") == 1:
            flops[name[len(prefix) :]] = int(sum(ops.values()))
    return flops


def model_info(config: LMGCSConfig, variant: str, frames: int = 30) -> ModelInfo:
    """Parameters and FLOPs per component of ``config`` for one walk of ``frames`` frames."""
    model = LMGCS(config)
    flops = count_flops(model, frames)
    components = []
    for name in COMPONENTS:
        module = getattr(model, name)
        params = sum(p.numel() for p in module.parameters()) if module is not None else 0
        constants = (
            sum(b.numel() for b in module.buffers() if b.is_floating_point())
            if name == "embedding_head"
            else 0
        )
        components.append(ComponentCost(name, params, flops.get(name, 0), constants))
    return ModelInfo(variant, frames, config.num_classes, tuple(components))


def format_table(info: ModelInfo) -> str:
    """Plain-text table of ``info`` with the paper's Table IX beside it."""
    lines = [
        f"LMGCS variant {info.variant!r}, one walk of T={info.frames} frames, "
        f"K={info.num_classes} classes",
        f"{'component':<16}{'params':>14}{'GFLOPs':>10}{'GMACs':>10}{'fitted consts':>15}",
    ]
    for c in info.components:
        lines.append(
            f"{c.name:<16}{c.params:>14,}{c.flops / 1e9:>10.3f}{c.flops / 2e9:>10.3f}"
            f"{c.constants:>15,}"
        )
    lines.append(
        f"{'total':<16}{info.params:>14,}{info.flops / 1e9:>10.3f}{info.flops / 2e9:>10.3f}"
        f"{info.constants:>15,}"
    )
    lines.append(f"{'paper IX':<16}{PAPER_PARAMS_M * 1e6:>14,.0f}{PAPER_GFLOPS:>10.2f}{'?':>10}")
    lines.append(
        "FLOPs: conv/matmul only, 1 multiply-add = 2 FLOPs. The paper does not name its "
        "counter; see model/README.md for why the numbers differ. The embedding head's "
        "fitted constants are not trained parameters (training.embedding_fit)."
    )
    return "\n".join(lines)
