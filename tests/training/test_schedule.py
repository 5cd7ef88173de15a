"""The run schedule: iteration runs keep the multi-step rule, budget runs finish inside time."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gaitid.training.checkpoint import load_checkpoint
from gaitid.training.config import ConfigError, ScheduleConfig, load_config
from gaitid.training.schedule import RunSchedule, ScheduleError
from gaitid.training.trainer import Trainer, TrainingError
from tests.training.conftest import tiny_config


def test_iteration_milestones_are_the_classic_multistep_rule() -> None:
    schedule = RunSchedule(
        ScheduleConfig(iterations=10, milestones=[4, 8], gamma=0.5, warmup_iterations=2), [1.0]
    )
    factors = [schedule.factor(i) for i in range(10)]
    assert factors == pytest.approx([0.5, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25])
    assert not schedule.done(9) and schedule.done(10)


def test_decay_fractions_follow_the_clock_in_a_budget_run() -> None:
    schedule = RunSchedule(ScheduleConfig(iterations=1000, decay_at=[0.5, 0.9], minutes=1.0), [2.0])
    plan = schedule.plan(setup_s=5.0, reserve_work_s=8.0)
    assert plan.train_s == pytest.approx(60 - 5 - (1.25 * 8 + 0.10 * 60))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    assert schedule.apply(optimizer, 3) == pytest.approx(2.0)
    schedule.add_time(0.6 * plan.train_s)  # past the first decay after only 3 iterations
    assert schedule.apply(optimizer, 3) == pytest.approx(0.2)
    assert not schedule.done(3)
    schedule.add_time(0.4 * plan.train_s)
    assert schedule.done(3) and schedule.factor(3) == pytest.approx(0.01)
    restored = RunSchedule(ScheduleConfig(iterations=1000, decay_at=[0.5, 0.9], minutes=1.0), [1])
    restored.load_state_dict(schedule.state_dict())
    assert restored.plan_ == plan and restored.done(3) and restored.base_lrs == [2.0]


def test_a_budget_with_no_room_to_train_is_refused() -> None:
    schedule = RunSchedule(ScheduleConfig(iterations=10, milestones=[5], minutes=0.5), [1.0])
    with pytest.raises(ScheduleError, match="no training time"):
        schedule.plan(setup_s=10.0, reserve_work_s=30.0)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"iterations": 10, "decay_at": [0.5, 0.5]}, "strictly increasing"),
        ({"iterations": 10, "decay_at": [1.0]}, "fractions in"),
        ({"iterations": 10, "decay_at": [0.5], "milestones": [5]}, "not both"),
        ({"iterations": 10, "milestones": [3], "minutes": 0}, "greater than 0"),
    ],
)
def test_bad_schedules_are_config_errors(
    synthetic_root: Path,
    write_config: Callable[..., Path],
    schedule: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tiny_config(synthetic_root, schedule=schedule)))


def test_a_budget_run_decays_fits_validates_and_checkpoints_in_time(
    synthetic_root: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    budget_min = 0.75
    cfg = load_config(
        write_config(
            tiny_config(
                synthetic_root,
                schedule={"iterations": 100_000, "decay_at": [0.6], "minutes": budget_min},
                embedding={"fit_walks": 6, "fit_frames": 5},
            )
        )
    )
    run = tmp_path / "run"
    result = Trainer(cfg, run).fit()
    assert result.finished and 1 <= result.iteration < 100_000  # ended by time
    timing = json.loads((run / "timing.json").read_text())
    # the whole call, fit and validation included, ends about when the budget does (the
    # reserve is an estimate: 25 % of slack absorbs a busy machine; without the reserve the
    # fit, validation and reports would all come on top)
    assert timing["wall_s_this_call"] <= 1.25 * 60 * budget_min
    assert timing["trained_s"] >= 0.9 * timing["plan"]["train_s"]
    with (run / "metrics.csv").open() as handle:
        lrs = [float(r["lr"]) for r in csv.DictReader(handle)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[-1] == pytest.approx(1e-5)  # decayed
    state = load_checkpoint(run / "checkpoints" / "last.pt", for_resume=True)
    assert state["meta"]["embedding_fit"]["frames_per_walk"] == 5
    assert (run / "eval" / "report.json").is_file()  # the partition's test subjects
    # a finished budget run resumed does nothing more
    again = Trainer(cfg, run).fit(resume=True)
    assert again.finished and again.iteration == result.iteration


def test_a_paused_budget_run_resumes_with_its_plan(
    synthetic_root: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = tiny_config(
        synthetic_root, schedule={"iterations": 100_000, "decay_at": [0.5], "minutes": 0.6}
    )
    cfg = load_config(write_config(config))
    run = tmp_path / "run"
    first = Trainer(cfg, run).fit(stop_after=2)
    assert not first.finished and first.iteration == 2
    plan = json.loads((run / "budget.json").read_text())
    saved = load_checkpoint(run / "checkpoints" / "last.pt", for_resume=True)["scheduler"]
    assert saved["plan"]["train_s"] == pytest.approx(plan["train_s"]) and saved["trained_s"] > 0
    other = load_config(write_config({**config, "schedule": {**config["schedule"], "minutes": 2}}))
    with pytest.raises(TrainingError, match=r"schedule\.minutes"):
        Trainer(other, run).fit(resume=True)
    second = Trainer(cfg, run).fit(resume=True)
    assert second.finished and second.iteration > 2


def test_cli_budget_is_kept_by_a_resume_that_does_not_repeat_it(
    synthetic_root: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from gaitid.cli import app

    config = write_config(
        tiny_config(synthetic_root, schedule={"iterations": 100_000, "decay_at": [0.5]})
    )
    run = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(
        app,
        ["train", str(config), "--out", str(run), "--max-minutes", "0.4", "--stop-after", "2"],
    )
    assert first.exit_code == 0, first.output
    assert "stopped" in first.output
    second = runner.invoke(app, ["train", str(config), "--out", str(run), "--resume"])
    assert second.exit_code == 0, second.output
    assert "finished" in second.output
    saved = load_checkpoint(run / "checkpoints" / "last.pt", for_resume=True)
    assert saved["config"]["schedule"]["minutes"] == 0.4
    assert saved["scheduler"]["trained_s"] >= 0.8 * saved["scheduler"]["plan"]["train_s"]


def test_periodic_validations_can_use_a_short_window(
    synthetic_root: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """``trainer.eval_frames`` makes in-run validations cheap; the final one stays whole."""
    config = tiny_config(synthetic_root)
    config["trainer"] = {**config["trainer"], "eval_every": 2, "eval_frames": 3}
    run = tmp_path / "run"
    result = Trainer(load_config(write_config(config)), run).fit()
    assert result.finished
    with (run / "eval.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == [2, 4]
    assert json.loads((run / "eval" / "report.json").read_text())["meta"]["iteration"] == 4
