"""What must match for a resume to continue the same run (``training.setup``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
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
        "data.clip_walks",
        "data.augment",
        "data.flip",
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


def test_clip_walks_join_their_subjects_and_never_bring_a_validation_subject(
    tmp_path: Path,
) -> None:
    from gaitid.training.data.opengait import WalkKey, write_walk

    clean, clip = tmp_path / "clean", tmp_path / "clip"
    for subject in ("001", "002", "003"):
        write_walk(clean, WalkKey(subject, "nm-01", "090"), np.full((4, 64, 64), 1, np.uint8))
        write_walk(clip, WalkKey(subject, "nm-01", "090"), np.full((3, 64, 64), 2, np.uint8))
    config = _config(clean, train_subjects=["001", "002"], val_subjects=["003"])
    plain = setup.load_training_data(config)
    assert len(plain.walks) == 2
    data = setup.load_training_data(
        config.model_copy(update={"data": config.data.model_copy(update={"clip_walks": clip})})
    )
    # each clip reading is one more walk of its subject; 003 (validation) stays out
    assert data.label_names == ["001", "002"]
    readings = sorted(
        (data.label_names[label], int(walk[0, 0, 0]), walk.shape[0])
        for walk, label in zip(data.walks, data.labels, strict=True)
    )
    assert readings == [("001", 1, 4), ("001", 2, 3), ("002", 1, 4), ("002", 2, 3)]
    assert all(walk.shape[1:] == (64, 44) for walk in data.walks)


def test_clip_walks_without_a_training_subject_are_refused(tmp_path: Path) -> None:
    from gaitid.training.data.opengait import WalkKey, write_walk

    clean, clip = tmp_path / "clean", tmp_path / "clip"
    write_walk(clean, WalkKey("001", "nm-01", "090"), np.full((4, 64, 64), 1, np.uint8))
    write_walk(clip, WalkKey("009", "nm-01", "090"), np.full((3, 64, 64), 2, np.uint8))
    config = _config(clean, train_subjects=["001"], clip_walks=str(clip))
    with pytest.raises(TrainingError, match="no clip-route walk of a training subject"):
        setup.load_training_data(config)
