"""Per-walk jobs in a process pool give the same results as in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gaitid.training.data.opengait import load_dataset
from gaitid.training.data.parallel import parallel_map
from gaitid.training.synth.dataset import SynthConfig, generate_dataset


def test_parallel_map_in_pool_matches_in_process() -> None:
    jobs = [-3, 1, -2, 5, 0, -7]
    assert list(parallel_map(abs, jobs, workers=1)) == [3, 1, 2, 5, 0, 7]
    assert sorted(parallel_map(abs, jobs, workers=2)) == [0, 1, 2, 3, 5, 7]
    with pytest.raises(ValueError, match="workers"):
        list(parallel_map(abs, jobs, workers=0))


@pytest.mark.slow
def test_synth_output_does_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    config = SynthConfig(
        subjects=2, views=(0, 90), conditions=("nm-01", "cl-01"), min_frames=8, max_frames=10
    )
    generate_dataset(config, tmp_path / "one", workers=1)
    generate_dataset(config, tmp_path / "two", workers=2)
    one, two = load_dataset(tmp_path / "one"), load_dataset(tmp_path / "two")
    assert one.keys() == two.keys()
    for key in one:
        np.testing.assert_array_equal(one[key], two[key])
