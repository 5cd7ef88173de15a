"""The tiny variant trains on synthetic walkers, writes its outputs, and resumes exactly."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from gaitid.training.checkpoint import load_checkpoint
from gaitid.training.config import load_config
from gaitid.training.trainer import Trainer, TrainingError
from tests.training.conftest import tiny_config


def _losses(run: Path) -> list[tuple[int, float, float]]:
    with (run / "metrics.csv").open() as handle:
        return [
            (int(r["iteration"]), float(r["loss_total"]), float(r["lr"]))
            for r in csv.DictReader(handle)
        ]


def test_run_writes_checkpoints_metrics_and_curves(uninterrupted: Path) -> None:
    rows = _losses(uninterrupted)
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r[1])) for r in rows)
    # multi-step schedule: 1e-4 for iterations 1-3, x0.1 from the milestone at 3
    assert [r[2] for r in rows] == pytest.approx([1e-4, 1e-4, 1e-4, 1e-5])
    assert (uninterrupted / "loss_curves.png").stat().st_size > 1000
    assert any((uninterrupted / "tensorboard").iterdir())
    ckpts = sorted(p.name for p in (uninterrupted / "checkpoints").iterdir())
    assert ckpts == ["iter-0000002.pt", "iter-0000004.pt", "last.pt"]  # no temp files left
    state = load_checkpoint(uninterrupted / "checkpoints" / "last.pt", for_resume=True)
    assert state["iteration"] == 4 and state["num_classes"] == 2
    assert state["labels"] == ["001", "002"]


def test_resume_reproduces_the_uninterrupted_loss_sequence(
    synthetic_root: Path, uninterrupted: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = load_config(write_config(tiny_config(synthetic_root)))
    run = tmp_path / "run"
    first = Trainer(cfg, run).fit(stop_after=1)
    assert not first.finished and first.iteration == 1
    # a crash after iteration 1's checkpoint would leave later rows behind: resume drops them
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    with (run / "metrics.csv").open("a") as handle:
        handle.write(",".join(["2"] + ["0"] * (len(header) - 1)) + "\n")
    second = Trainer(cfg, run).fit(resume=True)
    assert second.finished and second.iteration == 4
    assert _losses(run) == _losses(uninterrupted)  # exact: same batches, windows, dropout, Adam
    a = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(uninterrupted / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_changed_config(
    synthetic_root: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    run = tmp_path / "run"
    Trainer(load_config(write_config(tiny_config(synthetic_root))), run).fit(stop_after=1)
    changed = tiny_config(synthetic_root, sampler={"p": 2, "k": 1})
    with pytest.raises(TrainingError, match=r"sampler"):
        Trainer(load_config(write_config(changed, "b.yaml")), run).fit(resume=True)


def test_fresh_run_refuses_to_overwrite_and_resume_needs_a_checkpoint(
    synthetic_root: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    cfg = load_config(write_config(tiny_config(synthetic_root)))
    with pytest.raises(TrainingError, match="does not exist"):
        Trainer(cfg, tmp_path / "empty").fit(resume=True)
    Trainer(cfg, tmp_path / "run").fit(stop_after=1)
    with pytest.raises(TrainingError, match="--resume"):
        Trainer(cfg, tmp_path / "run").fit()


def test_second_stage_starts_from_the_first(
    synthetic_root: Path, uninterrupted: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    init: dict[str, Any] = {
        "checkpoint": str(uninterrupted / "checkpoints" / "last.pt"),
        "freeze": ["backbone"],
    }
    cfg = load_config(
        write_config(
            tiny_config(synthetic_root, init=init, schedule={"iterations": 1, "milestones": []})
        )
    )
    Trainer(cfg, tmp_path / "b").fit()
    before = load_checkpoint(uninterrupted / "checkpoints" / "last.pt")["model"]
    after = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    frozen = [k for k in before if k.startswith("backbone") and "running" not in k]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("fc"))
    bad = tiny_config(synthetic_root, init={**init, "freeze": ["no_such_module"]})
    with pytest.raises(TrainingError, match="no_such_module"):
        Trainer(load_config(write_config(bad, "bad.yaml")), tmp_path / "c").fit()


def test_cli_continues_a_run_from_its_weights_and_counts_every_iteration(
    synthetic_root: Path, uninterrupted: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """`gaitid train CONFIG --init CKPT --seed N` is the config's recipe started from CKPT (no
    near-copy of the config needed); its version counts CKPT's iterations too, and a resume
    keeps the init and seed without repeating them."""
    from typer.testing import CliRunner

    from gaitid.cli import app

    init = uninterrupted / "checkpoints" / "last.pt"
    first = load_checkpoint(init)
    config = write_config(tiny_config(synthetic_root))
    run = tmp_path / "continued"
    args = ["train", str(config), "--out", str(run)]
    started = CliRunner().invoke(
        app, [*args, "--init", str(init), "--seed", "5", "--stop-after", "2"]
    )
    assert started.exit_code == 0, started.output
    assert "stopped" in started.output
    resumed = CliRunner().invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "finished at iteration 4" in resumed.output
    state = load_checkpoint(run / "checkpoints" / "last.pt", for_resume=True)
    assert state["config"]["seed"] == 5
    assert Path(state["config"]["init"]["checkpoint"]) == init.resolve()
    meta = state["meta"]
    assert meta["iteration"] == 4 and meta["total_iterations"] == first["meta"]["iteration"] + 4
    assert meta["version"].endswith(f"tiny-test.it{meta['total_iterations']}")
    assert meta["continued_from"] == first["meta"]["version"]
    reseeded = CliRunner().invoke(app, [*args, "--resume", "--seed", "6"])
    assert reseeded.exit_code != 0 and "seed" in reseeded.output


def test_fine_tuning_starts_from_shipped_weights_with_a_new_classifier(
    synthetic_root: Path, uninterrupted: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    from gaitid.model.export import load_checkpoint_model, write_weights

    model, state = load_checkpoint_model(uninterrupted / "checkpoints" / "last.pt")
    shipped = write_weights(
        model,
        state,
        tmp_path / "shipped.pt",
        {"variant": "tiny", "version": "v", "training_data": "t"},
    )
    # all four subjects (the shipped weights knew two): the classifier is the new module
    data = {"root": str(synthetic_root), "frames": 8}
    init = {"checkpoint": str(shipped), "new_modules": ["bnneck.classifier"]}
    cfg = load_config(
        write_config(
            tiny_config(
                synthetic_root, data=data, init=init, schedule={"iterations": 1, "milestones": []}
            )
        )
    )
    Trainer(cfg, tmp_path / "ft").fit()
    tuned = load_checkpoint(tmp_path / "ft" / "checkpoints" / "last.pt")
    assert tuned["num_classes"] == 4 and tuned["model"]["bnneck.classifier.weight"].shape[-1] == 4
    without = tiny_config(synthetic_root, data=data, init={"checkpoint": str(shipped)})
    with pytest.raises(TrainingError, match=r"init\.new_modules"):
        Trainer(load_config(write_config(without, "b.yaml")), tmp_path / "ft2").fit()


def test_continuing_on_more_identities_keeps_the_known_ones_classifier_weights(
    synthetic_root: Path, uninterrupted: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """``init.keep_identities``: the two subjects the checkpoint trained on keep their classifier
    columns (matched by subject id, not position), the two new ones start random, and every
    other weight is the checkpoint's."""
    from gaitid.training.distributed import init_distributed
    from gaitid.training.trainer import _carried_classifier

    checkpoint = uninterrupted / "checkpoints" / "last.pt"
    state = load_checkpoint(checkpoint)
    known = state["model"]["bnneck.classifier.weight"]  # [P, D, 2]: subjects 001, 002
    fresh = torch.zeros(*known.shape[:-1], 4)
    carried = _carried_classifier(state, fresh, ["003", "002", "004", "001"])
    assert torch.equal(carried[..., 1], known[..., 1]) and torch.equal(
        carried[..., 3], known[..., 0]
    )
    assert not carried[..., [0, 2]].any() and not fresh.any()  # new ones untouched, input kept
    with pytest.raises(TrainingError, match="none of the checkpoint"):
        _carried_classifier(state, fresh, ["003", "004"])
    with pytest.raises(TrainingError, match="labels"):
        _carried_classifier({**state, "labels": None}, fresh, ["001"])

    data = {"root": str(synthetic_root), "frames": 8}  # all four subjects
    init = {"checkpoint": str(checkpoint), "keep_identities": True}
    schedule = {"iterations": 1, "milestones": []}
    cfg = load_config(
        write_config(tiny_config(synthetic_root, data=data, init=init, schedule=schedule))
    )
    single = init_distributed("cpu")
    model = Trainer(cfg, tmp_path / "more")._build_model(["001", "002", "003", "004"], single)
    weights = model.state_dict()
    assert torch.equal(weights["bnneck.classifier.weight"][..., :2], known)
    assert all(
        torch.equal(weights[k], v) for k, v in state["model"].items() if "classifier" not in k
    )
    Trainer(cfg, tmp_path / "more").fit()
    tuned = load_checkpoint(tmp_path / "more" / "checkpoints" / "last.pt")
    assert tuned["labels"] == ["001", "002", "003", "004"]
    assert tuned["model"]["bnneck.classifier.weight"].shape[-1] == 4


def test_widened_run_starts_from_the_narrow_network_and_trains_at_the_new_width(
    synthetic_root: Path, uninterrupted: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """``init.widen``: the tiny run's weights grown to wider inner backbone layers compute what
    they computed (the build, before any step), and the run trains and checkpoints the wide
    network; a width the checkpoint cannot grow into is refused before training."""
    from gaitid.model.export import load_checkpoint_model
    from gaitid.training.distributed import init_distributed

    checkpoint = uninterrupted / "checkpoints" / "last.pt"
    narrow, _ = load_checkpoint_model(checkpoint)
    wide_channels = [3, 6, 8, 8]  # tiny: 2 / 4 / 8 / 8
    model = {"variant": "tiny", "overrides": {"channels": wide_channels}}
    init = {"checkpoint": str(checkpoint), "widen": True}
    schedule = {"iterations": 1, "milestones": []}
    cfg = load_config(
        write_config(tiny_config(synthetic_root, model=model, init=init, schedule=schedule))
    )
    wide = Trainer(cfg, tmp_path / "wide")._build_model(["001", "002"], init_distributed("cpu"))
    assert wide.backbone.layers[1].global_conv.weight.shape[:2] == (6, 3)
    silhouettes = torch.rand(2, 8, 64, 44, generator=torch.Generator().manual_seed(1)) > 0.5
    lengths = torch.tensor([8, 5])
    with torch.no_grad():
        before = narrow.eval()(silhouettes.float(), lengths).part_features
        after = wide.eval()(silhouettes.float(), lengths).part_features
    assert float((after - before).norm() / before.norm()) < 0.05
    Trainer(cfg, tmp_path / "wide").fit()
    trained = load_checkpoint(tmp_path / "wide" / "checkpoints" / "last.pt")
    assert list(trained["model_config"]["channels"]) == wide_channels

    narrower = {"variant": "tiny", "overrides": {"channels": [2, 4, 8, 16]}}
    bad = tiny_config(synthetic_root, model=narrower, init=init, schedule=schedule)
    with pytest.raises(TrainingError, match=r"init\.widen"):
        Trainer(load_config(write_config(bad, "bad.yaml")), tmp_path / "bad").fit()
