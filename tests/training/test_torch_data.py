"""TrainBatches: the rows of a training batch, from one settings object (the data section)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.typing import NDArray

from gaitid.training.augment import AugmentConfig
from gaitid.training.config import BatchPipeline, DataConfig
from gaitid.training.sampler import BatchSpec
from gaitid.training.torch_data import TrainBatches, sample_window


def _walk(length: int, first: int) -> NDArray[np.uint8]:
    """A walk whose frame ``i`` is filled with ``first + i``: rows name their frames."""
    values = np.arange(first, first + length, dtype=np.uint8)
    return np.broadcast_to(values[:, None, None], (length, 64, 44)).copy()


WALKS = [_walk(40, 0), _walk(3, 100), _walk(25, 150)]
LABELS = [0, 1, 1]


def _frames_of(batch: torch.Tensor) -> list[list[int]]:
    return [[int(frame[0, 0]) for frame in row] for row in batch.numpy()]


def test_rows_are_ordered_windows_of_the_asked_walks() -> None:
    spec = BatchSpec(iteration=5, indices=(0, 2, 1, 0))
    frames, labels = TrainBatches(WALKS, LABELS, BatchPipeline(frames=6), seed=1)[spec]
    assert frames.dtype == torch.uint8 and frames.shape == (4, 6, 64, 44)
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 1, 0]
    rows = _frames_of(frames)
    assert all(np.all(np.diff(r) == 1) for r in (rows[0], rows[1], rows[3]))
    assert 0 <= rows[0][0] <= 34 and 150 <= rows[1][0] <= 169
    # a 3-frame walk is repeated end to end and the window cut from the repetition
    assert set(rows[2]) <= {100, 101, 102} and len(rows[2]) == 6


def test_batches_are_a_function_of_seed_iteration_and_rank() -> None:
    pipeline = BatchPipeline(frames=6)
    spec = BatchSpec(iteration=3, indices=(0, 2, 0, 2))
    batch = TrainBatches(WALKS, LABELS, pipeline, seed=4)[spec][0]
    assert torch.equal(batch, TrainBatches(WALKS, LABELS, pipeline, seed=4)[spec][0])
    others = [
        TrainBatches(WALKS, LABELS, pipeline, seed=5)[spec][0],
        TrainBatches(WALKS, LABELS, pipeline, seed=4, rank=1)[spec][0],
        TrainBatches(WALKS, LABELS, pipeline, seed=4)[BatchSpec(4, spec.indices)][0],
    ]
    assert all(not torch.equal(batch, other) for other in others)


def test_the_config_data_section_is_the_pipeline(tmp_path: Path) -> None:
    """The trainer hands ``config.data`` over whole: a setting added to the pipeline reaches
    the batches without the trainer naming it."""
    augment = AugmentConfig(probability=1.0)
    data = DataConfig(root=tmp_path, frames=7, augment=augment, workers=3)
    spec = BatchSpec(iteration=2, indices=(0, 1))
    from_config = TrainBatches(WALKS, LABELS, data, seed=3)[spec][0]
    bare = TrainBatches(WALKS, LABELS, BatchPipeline(frames=7, augment=augment), seed=3)[spec][0]
    assert from_config.shape[1] == 7 and torch.equal(from_config, bare)


def test_walks_and_labels_must_pair_up() -> None:
    with pytest.raises(ValueError, match="3 walks but 2 labels"):
        TrainBatches(WALKS, [0, 1], BatchPipeline(), seed=0)


def test_flipped_rows_are_mirrored_windows_and_no_flip_draws_nothing() -> None:
    """``data.flip``: a mirrored row is its window mirrored left to right; at 0 the batches
    are those of a pipeline without the setting (no draw taken from the generator)."""
    ramp = np.broadcast_to(np.arange(44, dtype=np.uint8)[None, None, :], (30, 64, 44)).copy()
    walks, labels = [ramp, ramp.copy(), ramp.copy(), ramp.copy()], [0, 0, 1, 1]
    spec = BatchSpec(iteration=1, indices=(0, 1, 2, 3, 0, 1, 2, 3))
    always = TrainBatches(walks, labels, BatchPipeline(frames=5, flip=1.0), seed=2)[spec][0]
    assert torch.equal(always, torch.from_numpy(ramp[:5, :, ::-1].copy()).expand(8, 5, 64, 44))
    half = TrainBatches(walks, labels, BatchPipeline(frames=5, flip=0.5), seed=2)[spec][0]
    mirrored = [bool(row[0, 0, 0] == 43) for row in half.numpy()]
    assert any(mirrored) and not all(mirrored)
    spec = BatchSpec(iteration=3, indices=(0, 2, 1))
    off = TrainBatches(WALKS, LABELS, BatchPipeline(frames=6, flip=0.0), seed=4)[spec][0]
    rng = np.random.default_rng([4, 3, 0])  # one window draw per row, nothing else
    expected = [WALKS[i][sample_window(WALKS[i].shape[0], 6, rng)] for i in spec.indices]
    assert torch.equal(off, torch.from_numpy(np.stack(expected)))
