"""DDP under torchrun: 2 CPU processes with the gloo backend train, checkpoint and resume exactly.

Slow (several torchrun launches of 2 processes each); run with ``pytest -m slow``.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gaitid.training.checkpoint import load_checkpoint
from tests.training.conftest import tiny_config

pytestmark = pytest.mark.slow


def _torchrun(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    gaitid = Path(sys.executable).with_name("gaitid")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "--no-python",
        str(gaitid),
        "train",
        str(config),
        "--out",
        str(out),
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _losses(run: Path) -> list[str]:
    with (run / "metrics.csv").open() as handle:
        return [r["loss_total"] for r in csv.DictReader(handle)]


def test_two_process_gloo_training_resumes_exactly(
    synthetic_root: Path, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    config = write_config(
        tiny_config(synthetic_root, schedule={"iterations": 3, "milestones": [2]})
    )
    _torchrun(config, tmp_path / "full")
    state = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt", for_resume=True)
    assert len(state["rng"]) == 2  # every rank's RNG is kept for an exact resume
    assert len(_losses(tmp_path / "full")) == 3  # rank 0 logs alone

    # every rank pauses after iteration 1 with one checkpoint, and the resume continues it
    _torchrun(config, tmp_path / "split", "--stop-after", "1")
    _torchrun(config, tmp_path / "split", "--resume")
    assert _losses(tmp_path / "split") == _losses(tmp_path / "full")
