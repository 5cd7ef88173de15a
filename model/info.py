"""Parameter and FLOP accounting per component, beside the paper's Table IX.

One unit throughout: **FLOPs = 2 x multiply-adds** of convolutions and matrix products,
counted by ``torch.utils.flop_counter.FlopCounterMode`` (element-wise work, activations,
pooling, softmax and LayerNorm are not counted, as in most papers' counters). MACs are half.
Costs are given per frame (one walk of T = 1) and per walk (T = ``frames``, default 30).

Table IX (CASIA-B LT, RTX 3090) gives parameters and "FLOPs (G)" for every branch set; its
counter is not named. :func:`table_ix` builds the variant with each of those branch sets and
reports its parameters without the K-way classifier (whose size depends on the training
set) and its GFLOPs per frame with and without GSFE: the paper's 2.58-2.60 G sit next to
our per-frame cost without GSFE's linear layers (``model/README.md`` explains).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Final

import torch
from torch.utils.flop_counter import FlopCounterMode

from gaitid.contract import FRAME_HEIGHT, FRAME_WIDTH
from gaitid.model.config import LMGCSConfig
from gaitid.model.lmgcs import LMGCS

#: Table IX, as printed: branch set -> (parameters in M, "FLOPs (G)").
TABLE_IX: Final[dict[tuple[int, ...], tuple[float, float]]] = {
    (1,): (14.72, 2.58),
    (3,): (14.72, 2.59),
    (5,): (14.72, 2.59),
    (1, 3): (15.77, 2.59),
    (3, 5): (15.77, 2.59),
    (1, 5): (15.77, 2.60),
    (1, 3, 5): (16.82, 2.60),
}
#: The full model's row (all three branches).
PAPER_PARAMS_M: Final = TABLE_IX[(1, 3, 5)][0]
PAPER_GFLOPS: Final = TABLE_IX[(1, 3, 5)][1]
COMPONENTS: Final = ("backbone", "lmfe", "mff", "gsfe", "fc", "bnneck", "embedding_head")


@dataclass(frozen=True)
class ComponentCost:
    """Parameters and FLOPs of one named part of the network."""

    name: str
    params: int  # trainable parameters
    flops: int  # one walk of ModelInfo.frames frames
    frame_flops: int  # one frame (T = 1)
    constants: int = 0  # fixed fitted values (the embedding head's mean and reduction matrix)


@dataclass(frozen=True)
class ModelInfo:
    """The whole accounting of one config at one sequence length."""

    variant: str
    frames: int
    num_classes: int
    hpp: str
    feature_channels: int
    components: tuple[ComponentCost, ...]
    classifier_params: int  # the BNNeck's K-way linear layer, part of "bnneck"

    @property
    def params(self) -> int:
        return sum(c.params for c in self.components)

    @property
    def flops(self) -> int:
        return sum(c.flops for c in self.components)

    @property
    def frame_flops(self) -> int:
        return sum(c.frame_flops for c in self.components)

    @property
    def constants(self) -> int:
        return sum(c.constants for c in self.components)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form, with totals and the paper's reference numbers."""
        return {
            **asdict(self),
            "total_params": self.params,
            "total_params_without_classifier": self.params - self.classifier_params,
            "total_constants": self.constants,
            "total_flops": self.flops,
            "total_frame_flops": self.frame_flops,
            "total_macs": self.flops // 2,
            "paper_table_ix": {"params_m": PAPER_PARAMS_M, "gflops": PAPER_GFLOPS},
        }


@dataclass(frozen=True)
class TableIXRow:
    """One row of Table IX beside the same branch set of a variant."""

    branches: tuple[int, ...]
    paper_params_m: float
    paper_gflops: float
    params: int  # trainable, without the classifier
    frame_flops: int  # one frame, every component
    frame_flops_without_gsfe: int


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
    """Parameters and FLOPs per component of ``config``, per frame and per walk."""
    model = LMGCS(config)
    walk, frame = count_flops(model, frames), count_flops(model, 1)
    components = []
    for name in COMPONENTS:
        module = getattr(model, name)
        params = sum(p.numel() for p in module.parameters()) if module is not None else 0
        constants = (
            sum(b.numel() for b in module.buffers() if b.is_floating_point())
            if name == "embedding_head"
            else 0
        )
        components.append(
            ComponentCost(name, params, walk.get(name, 0), frame.get(name, 0), constants)
        )
    classifier = getattr(model.bnneck, "classifier", None)
    classifier_params = sum(p.numel() for p in classifier.parameters()) if classifier else 0
    return ModelInfo(
        variant,
        frames,
        config.num_classes,
        config.hpp,
        config.feature_channels,
        tuple(components),
        classifier_params,
    )


def table_ix(config: LMGCSConfig) -> list[TableIXRow]:
    """``config`` with each of Table IX's branch sets, beside the paper's row."""
    rows = []
    for branches, (params_m, gflops) in TABLE_IX.items():
        fields = config.model_dump()
        fields.update(branches=branches, fusion=config.fusion if len(branches) > 1 else "none")
        info = model_info(LMGCSConfig.model_validate(fields), "table-ix", frames=1)
        by_name = {c.name: c for c in info.components}
        rows.append(
            TableIXRow(
                branches,
                params_m,
                gflops,
                info.params - info.classifier_params,
                info.frame_flops,
                info.frame_flops - by_name["gsfe"].frame_flops,
            )
        )
    return rows


def format_table(info: ModelInfo, rows: list[TableIXRow] | None = None) -> str:
    """Plain-text tables: components per frame and per walk, then Table IX beside ours."""
    lines = [
        f"LMGCS variant {info.variant!r}: HPP {info.hpp}, part features of "
        f"{info.feature_channels} channels; K={info.num_classes} classes",
        "GFLOPs = 2 x multiply-adds of convolutions and matrix products (FlopCounterMode)",
        "",
        f"{'component':<16}{'params':>14}{'GFLOPs/frame':>14}"
        f"{f'GFLOPs/walk T={info.frames}':>20}{'fitted consts':>15}",
    ]
    for c in info.components:
        lines.append(
            f"{c.name:<16}{c.params:>14,}{c.frame_flops / 1e9:>14.3f}{c.flops / 1e9:>20.3f}"
            f"{c.constants:>15,}"
        )
    lines.append(
        f"{'total':<16}{info.params:>14,}{info.frame_flops / 1e9:>14.3f}"
        f"{info.flops / 1e9:>20.3f}{info.constants:>15,}"
    )
    lines.append(
        f"{'  no classifier':<16}{info.params - info.classifier_params:>14,}"
        f"   (the BNNeck's {info.classifier_params:,}-parameter K-way layer left out)"
    )
    if rows:
        lines += [
            "",
            "Table IX (CASIA-B LT) beside this variant with the same branches; params without",
            "the classifier; the paper does not name its FLOP counter:",
            f"{'branches':<10}{'paper M':>9}{'ours M':>9}{'diff':>8}{'paper G':>9}"
            f"{'ours G/frame':>14}{'without GSFE':>14}",
        ]
        for row in rows:
            ours = row.params / 1e6
            lines.append(
                f"{','.join(map(str, row.branches)):<10}{row.paper_params_m:>9.2f}{ours:>9.2f}"
                f"{ours - row.paper_params_m:>+8.2f}{row.paper_gflops:>9.2f}"
                f"{row.frame_flops / 1e9:>14.2f}{row.frame_flops_without_gsfe / 1e9:>14.2f}"
            )
    lines.append(
        "See model/README.md for what matches the paper and what cannot. The embedding "
        "head's fitted constants are not trained parameters (training.embedding_fit)."
    )
    return "\n".join(lines)
