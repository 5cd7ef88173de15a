"""Raw layout -> ``gaitid pretreat`` -> OpenGait layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from gaitid.training.cli import register
from gaitid.training.data.errors import DatasetError
from gaitid.training.data.opengait import WalkKey, index_dataset, load_dataset, load_walk
from gaitid.training.data.pretreat import pretreat
from tests.utils.synthetic import make_synthetic_dataset


@pytest.fixture(scope="module")
def synthetic_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny synthetic dataset written both pretreated (OpenGait) and raw (PNG frames)."""
    base = tmp_path_factory.mktemp("synth")
    opengait = make_synthetic_dataset(
        base / "opengait",
        subjects=2,
        views=(36, 90),
        conditions=("nm-01", "cl-01"),
        frames=(8, 10),
        raw_root=base / "raw",
    )
    return opengait, base / "raw"


def test_pretreat_of_raw_frames_reproduces_the_opengait_walks(
    synthetic_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    opengait, raw = synthetic_pair
    report = pretreat(raw, tmp_path / "out")
    expected = load_dataset(opengait)
    produced = load_dataset(tmp_path / "out")
    assert report.walks_written == len(expected) == 8
    assert report.skipped == ()
    assert report.frames_written == sum(v.shape[0] for v in expected.values())
    assert produced.keys() == expected.keys()
    for key, frames in expected.items():
        np.testing.assert_array_equal(produced[key], frames)


def test_unusable_walks_are_skipped_with_their_reason(
    synthetic_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    _, raw = synthetic_pair
    copy = tmp_path / "raw"
    for key, walk_dir in [(WalkKey("001", "nm-01", "090"), raw / "001" / "nm-01" / "090")]:
        target = copy / key.relative_dir()
        target.mkdir(parents=True)
        frames = sorted(walk_dir.glob("*.png"))
        for frame in frames:
            (target / frame.name).write_bytes(frame.read_bytes())
        # one blank frame is dropped and counted, not fatal
        cv2.imwrite(str(target / "zzz-999.png"), np.zeros((240, 320), np.uint8))
    blank = copy / "009" / "nm-01" / "000"
    blank.mkdir(parents=True)
    cv2.imwrite(str(blank / "1.png"), np.zeros((240, 320), np.uint8))

    report = pretreat(copy, tmp_path / "out")
    assert report.walks_written == 1 and report.frames_dropped == 1
    assert [s.key for s in report.skipped] == [WalkKey("009", "nm-01", "000")]
    assert str(blank) in report.skipped[0].reason and "usable" in report.skipped[0].reason
    assert [k for k, _ in index_dataset(tmp_path / "out")] == [WalkKey("001", "nm-01", "090")]


def test_pretreat_rejects_empty_root_and_in_place_output(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    with pytest.raises(DatasetError, match="no raw walks"):
        pretreat(tmp_path / "raw", tmp_path / "out")
    with pytest.raises(DatasetError, match="must differ"):
        pretreat(tmp_path / "raw", tmp_path / "raw")


def test_pretreat_command_writes_layout_and_reports(
    synthetic_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    _, raw = synthetic_pair
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["pretreat", str(raw), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "wrote 8 walks" in result.output
    walk = load_walk(tmp_path / "out" / "002" / "cl-01" / "036" / "036.pkl")
    assert walk.dtype == np.uint8 and walk.shape[1:] == (64, 64)

    missing = CliRunner().invoke(app, ["pretreat", str(tmp_path / "nope"), str(tmp_path / "o")])
    assert missing.exit_code == 2 and "not a directory" in missing.output
