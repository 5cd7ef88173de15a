"""model-info: parameter and FLOP accounting per component, checked against hand counts."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gaitid.cli import build_app
from gaitid.model import create_model
from gaitid.model.info import (
    PAPER_GFLOPS,
    PAPER_PARAMS_M,
    TABLE_IX,
    count_flops,
    format_table,
    model_info,
    table_ix,
)
from gaitid.model.registry import resolve_config


@pytest.mark.parametrize("frames", [1, 30])
def test_backbone_flops_equal_the_hand_count(frames: int) -> None:
    """tiny: 1->2 conv at 64x44, pool, GL 2->4 at 32x22, pool, GL 4->8, GL 8->8 at 16x11."""
    k = 27  # 3x3x3 kernel
    macs = frames * (
        64 * 44 * 2 * 1 * k  # layer 0
        + 2 * 32 * 22 * 4 * 2 * k  # layer 1, global + local (strips only split the map)
        + 2 * 16 * 11 * 8 * 4 * k  # layer 2
        + 2 * 16 * 11 * 8 * 8 * k  # layer 3
    )
    assert count_flops(create_model("tiny"), frames)["backbone"] == 2 * macs


def test_components_cover_every_parameter() -> None:
    config = resolve_config("tiny", num_classes=11)
    info = model_info(config, "tiny", frames=7)
    assert info.params == sum(p.numel() for p in create_model(config).parameters())
    names = [c.name for c in info.components]
    assert names == ["backbone", "lmfe", "mff", "gsfe", "fc", "bnneck", "embedding_head"]
    by_name = {c.name: c for c in info.components}
    stripes, dim = config.num_stripes, config.embed_dim
    assert by_name["fc"].params == stripes * config.feature_channels * dim
    # the service embedding is fitted, not trained: constants (mean + matrix), no parameters
    assert by_name["embedding_head"].params == 0
    assert by_name["embedding_head"].constants == stripes * dim * (256 + 1)
    assert info.constants == by_name["embedding_head"].constants
    assert by_name["mff"].params == 0  # static fusion: no parameters (III-C)
    assert info.flops == sum(c.flops for c in info.components) > 0


def test_gsfe_flops_grow_with_depth() -> None:
    shallow = model_info(resolve_config("tiny"), "tiny").components[3].flops
    deep = model_info(resolve_config("tiny", enc_layers=3, dec_layers=3), "tiny").components[3]
    assert deep.flops > 2 * shallow


def test_cli_model_info_json_and_table() -> None:
    runner = CliRunner()
    result = runner.invoke(build_app(), ["model-info", "tiny", "--json", "--frames", "5"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["frames"] == 5 and data["num_classes"] == 74
    assert data["paper_table_ix"] == {"params_m": PAPER_PARAMS_M, "gflops": PAPER_GFLOPS}
    assert data["total_macs"] * 2 == data["total_flops"]
    assert [row["branches"] for row in data["table_ix"]] == [list(b) for b in TABLE_IX]
    table = runner.invoke(build_app(), ["model-info", "tiny"])
    assert table.exit_code == 0 and "Table IX" in table.output and "backbone" in table.output
    assert "1,3,5" in table.output and "16.82" in table.output
    bad = runner.invoke(build_app(), ["model-info", "huge"])
    assert bad.exit_code != 0 and "unknown variant" in bad.output


def test_format_table_lists_totals() -> None:
    text = format_table(model_info(resolve_config("tiny"), "tiny"))
    assert any(line.startswith("total ") for line in text.splitlines())
    assert "no classifier" in text


#: ``gaitid model-info paper`` (K = 74): parameters and per-frame GFLOPs x 1e9 per component.
PAPER_COMPONENTS = {
    "backbone": (1_438_560, 2_496_282_624),
    "lmfe": (787_968, 25_165_824),
    "mff": (0, 0),
    "gsfe": (11_048_960, 1_057_357_824),
    "fc": (3_145_728, 12_582_912),
    "bnneck": (933_888, 1_818_624),
    "embedding_head": (0, 6_291_456),
}
#: Ours beside Table IX: trainable parameters without the K-way classifier, per branch set.
PAPER_TABLE_IX_PARAMS = {
    (1,): 13_675_872,
    (3,): 13_806_944,
    (5,): 13_938_016,
    (1, 3): 14_995_296,
    (3, 5): 15_257_440,
    (1, 5): 15_126_368,
    (1, 3, 5): 16_445_792,
}


def test_paper_counts_are_pinned() -> None:
    """Issue 18: the `paper` variant (HPP concat, 16 parts) accounted component by component."""
    config = resolve_config("paper", num_classes=74)
    assert (config.hpp, config.parts, config.feature_channels) == ("concat", 16, 256)
    info = model_info(config, "paper", frames=30)
    got = {c.name: (c.params, c.frame_flops) for c in info.components}
    assert got == PAPER_COMPONENTS
    assert info.classifier_params == 16 * 3 * 256 * 74
    assert info.params - info.classifier_params == 16_445_792  # Table IX: 16.82 M
    # per walk = per frame x 30 for the per-frame parts (backbone, LMFE)
    by_name = {c.name: c for c in info.components}
    assert by_name["backbone"].flops == 30 * by_name["backbone"].frame_flops
    rows = table_ix(config)
    assert [r.branches for r in rows] == list(TABLE_IX)
    assert {r.branches: r.params for r in rows} == PAPER_TABLE_IX_PARAMS
    for row in rows:
        # the paper's increments per branch are one FC (1.05 M); ours add the branch's LMFE
        assert abs(row.params / 1e6 - row.paper_params_m) < 1.1
        assert abs(row.frame_flops_without_gsfe / 1e9 - row.paper_gflops) < 0.1


def test_the_sum_reading_is_the_ablation() -> None:
    """hpp="sum" with 32 parts: OpenGait's HPP, the reading `paper` used before issue 18."""
    config = resolve_config("paper", num_classes=74, hpp="sum", parts=32)
    assert config.feature_channels == 128
    assert model_info(config, "paper-sum", frames=1).params == 11_526_752


def test_model_cli_registration_does_not_import_torch() -> None:
    """`gaitid --help` / `gaitid serve` must stay torch-free: model.cli imports lazily."""
    import subprocess
    import sys

    code = "import sys, gaitid.model.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
