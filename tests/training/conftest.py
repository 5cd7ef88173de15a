"""Fixtures of the training tests: a tiny synthetic dataset and config writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.utils.synthetic import make_synthetic_dataset

#: CASIA-B-style walks: two gallery conditions and one of each probe set, two views.
CONDITIONS = ("nm-01", "nm-02", "nm-05", "bg-01", "cl-01")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 subjects (partition: 001-002 train, 003-004 test) x 2 views x 5 walks of 8-14 frames."""
    root = tmp_path_factory.mktemp("synthetic") / "data"
    return make_synthetic_dataset(
        root, subjects=4, views=(0, 90), conditions=CONDITIONS, seed=3, frames=(8, 14)
    )


def tiny_config(root: Path, **sections: Any) -> dict[str, Any]:
    """A fast tiny-variant config as a dict; ``sections`` replace whole top-level keys."""
    config: dict[str, Any] = {
        "name": "tiny-test",
        "seed": 11,
        "device": "cpu",
        "data": {"root": str(root), "partition": str(root / "partition.json"), "frames": 8},
        "model": {"variant": "tiny"},
        "sampler": {"p": 2, "k": 2},
        "schedule": {"iterations": 4, "milestones": [3]},
        "trainer": {
            "checkpoint_every": 2,
            "log_every": 1,
            "eval_every": 0,
            "eval_batch_size": 16,
            "progress": False,
        },
    }
    config.update(sections)
    return config


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    def write(config: dict[str, Any], name: str = "train.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(config))
        return path

    return write


@pytest.fixture(scope="session")
def uninterrupted(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished 4-iteration tiny run (checkpoints at 2 and 4), shared by several tests."""
    from gaitid.training.config import load_config
    from gaitid.training.trainer import Trainer

    base = tmp_path_factory.mktemp("uninterrupted")
    cfg_path = base / "train.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(synthetic_root)))
    run = base / "run"
    result = Trainer(load_config(cfg_path), run).fit()
    assert result.finished and result.iteration == 4
    return run


@pytest.fixture(scope="session")
def exported(uninterrupted: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``gaitid export`` of the uninterrupted run's last checkpoint (ONNX)."""
    from typer.testing import CliRunner

    from gaitid.cli import app

    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    ckpt = uninterrupted / "checkpoints" / "last.pt"
    result = CliRunner().invoke(app, ["export", str(ckpt), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out
