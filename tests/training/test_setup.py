"""What must match for a resume to continue the same run (``training.setup``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from gaitid.training import setup
from gaitid.training.config import TrainConfig
from gaitid.training.objective import to_host
from gaitid.training.setup import TrainingError, check_resume_compatible


def _config(tmp_path: Path, **data: Any) -> TrainConfig:
    return TrainConfig.model_validate({"data": {"root": str(tmp_path), **data}})


def test_every_data_setting_but_the_free_ones_is_fixed() -> None:
    fixed = {k for k in setup._RESUME_FIXED if k.startswith("data.")}
    assert fixed == {
        "data.root",
        "data.partition",
        "data.train_subjects",
        "data.frames",
        "data.min_frames",
        "data.augment",
    }


def test_workers_and_validation_may_change_the_batches_may_not(tmp_path: Path) -> None:
    saved = _config(tmp_path).model_dump(mode="json")
    check_resume_compatible(saved, _config(tmp_path, workers=4, val_subjects=["001"]))
    with pytest.raises(TrainingError, match=r"data\.frames"):
        check_resume_compatible(saved, _config(tmp_path, frames=20))
    with pytest.raises(TrainingError, match=r"data\.augment"):
        check_resume_compatible(saved, _config(tmp_path, augment={"probability": 0.5}))


def test_a_checkpoint_from_before_a_setting_existed_resumes_at_its_default(
    tmp_path: Path,
) -> None:
    """Checkpoints written before ``data.augment`` existed trained without it."""
    saved = _config(tmp_path).model_dump(mode="json")
    del saved["data"]["augment"]
    check_resume_compatible(saved, _config(tmp_path))
    with pytest.raises(TrainingError, match=r"data\.augment"):
        check_resume_compatible(saved, _config(tmp_path, augment={"probability": 0.5}))


def test_loss_terms_reach_the_host_in_one_copy() -> None:
    terms = {
        "loss_total": torch.tensor(1.5),
        "ce_accuracy": torch.tensor(0.25, dtype=torch.bfloat16),
    }
    assert to_host(terms) == {"loss_total": 1.5, "ce_accuracy": 0.25}
    assert to_host({}) == {}
