"""``bench/augment_dose.py``: one yardstick for a degradation's dose and the clip route's."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tests.training.conftest import tiny_config
from tests.utils.bench import load_bench


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(load_bench("augment_dose").app, list(args))
    return result.exit_code, result.output


def test_a_dose_is_scored_on_the_walks_the_clip_route_read(
    synthetic_root: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    """Clip walks that *are* the clean walks score a cosine of 1; a degradation scores below
    it; a training config contributes its own ``data.augment`` settings, named by its file."""
    config = tmp_path / "harsh.yaml"
    augment = {"probability": 0.5, "shift_px": 3.0, "morph_px": 2}
    spec = tiny_config(synthetic_root)
    spec["data"]["augment"] = augment
    config.write_text(yaml.safe_dump(spec))
    out = tmp_path / "dose.json"
    code, output = _run(
        str(uninterrupted / "checkpoints" / "last.pt"),
        *("--data", str(synthetic_root), "--clip-walks", str(synthetic_root)),
        *("--subjects", "003-004", "--dose", "default", "--config", str(config)),
        *("--out", str(out)),
    )
    assert code == 0, output
    figures = json.loads(out.read_text())
    assert figures["walks"] == 2 * 2 * 5  # 2 subjects x 2 views x 5 walks
    assert abs(figures["clip route"]["mean"] - 1.0) < 1e-5
    frames = figures["clip route"]["frames"]
    assert frames["clean_mean"] == frames["clip_mean"]
    assert (frames["whole_walks"], frames["shortened_walks"]) == (20, 0)
    assert abs(frames["whole_cosine"] - 1.0) < 1e-5 and frames["shortened_cosine"] is None
    assert figures["default"]["mean"] < 0.999
    assert figures["harsh"]["mean"] < 0.999
    assert figures["harsh"]["augment"]["shift_px"] == 3.0
    assert figures["harsh"]["augment"]["morph_px"] == 2
    assert "| clip route |" in output and "| harsh |" in output


def test_clip_walks_the_dataset_lacks_are_refused(
    synthetic_root: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    """A clip walk with no clean twin cannot be compared walk for walk, subjects the clip
    folder lacks cannot be read, and a dose must be one the script knows: each is a clear
    error, not a traceback."""
    clips = tmp_path / "clips"
    (clips / "003" / "nm-03" / "000").mkdir(parents=True)
    source = next((synthetic_root / "003" / "nm-01" / "000").iterdir())
    (clips / "003" / "nm-03" / "000" / source.name).write_bytes(source.read_bytes())
    model = str(uninterrupted / "checkpoints" / "last.pt")
    cases = (
        (("--subjects", "003"), "lacks: 003/nm-03/000"),
        (("--subjects", "003-004"), "have no walks"),
        (("--subjects", "003", "--dose", "heavy"), "unknown dose ['heavy']"),
    )
    for options, message in cases:
        code, output = _run(
            model, *("--data", str(synthetic_root), "--clip-walks", str(clips)), *options
        )
        assert code == 2
        assert message in output, output
