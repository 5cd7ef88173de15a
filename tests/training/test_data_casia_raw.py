"""Raw CASIA-B style folders of PNG silhouettes, pretreated on the fly by the service's reader."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from gaitid.decode import decode_path, natural_key
from gaitid.errors import CorruptUploadError, TooFewFramesError
from gaitid.preprocess import normalize_sequence, to_network_input
from gaitid.training.data.casia_raw import frame_paths, iter_raw_walks, load_raw_walk
from gaitid.training.data.errors import DatasetError, DatasetFormatError
from gaitid.training.data.opengait import WalkKey


def _person(height: int = 240, width: int = 320, x: int = 150, value: int = 255) -> np.ndarray:
    """A crude upright figure (torso + legs) as a 0/value mask."""
    frame = np.zeros((height, width), np.uint8)
    cv2.ellipse(frame, (x, 90), (14, 40), 0, 0, 360, value, -1)
    cv2.circle(frame, (x, 40), 10, value, -1)
    cv2.line(frame, (x, 120), (x - 12, 200), value, 8)
    cv2.line(frame, (x, 120), (x + 10, 200), value, 8)
    return frame


def _write_frames(folder: Path, frames: list[np.ndarray], names: list[str] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"{i:03d}.png" for i in range(len(frames))]
    for name, frame in zip(names, frames, strict=True):
        assert cv2.imwrite(str(folder / name), frame)


def test_natural_key_orders_numbers_by_value() -> None:
    names = ["f10.png", "f2.png", "f1.png", "F3.png"]
    assert sorted(names, key=natural_key) == ["f1.png", "f2.png", "F3.png", "f10.png"]


def test_frames_are_read_in_natural_order(tmp_path: Path) -> None:
    frames = [_person(x=100 + 10 * i) for i in range(3)]
    _write_frames(
        tmp_path / "w",
        frames,
        ["001-nm-01-090-10.png", "001-nm-01-090-2.png", "001-nm-01-090-9.png"],
    )
    (tmp_path / "w" / "notes.txt").write_text("ignored")
    names = [p.name for p in frame_paths(tmp_path / "w")]
    assert names == ["001-nm-01-090-2.png", "001-nm-01-090-9.png", "001-nm-01-090-10.png"]


def test_training_reads_a_raw_folder_as_the_service_does(tmp_path: Path) -> None:
    """Colour frames (here red silhouettes) were read as grey by luminance for training,
    while the service takes the channel maximum: the two saw different silhouettes."""
    frames = []
    for i in range(4):
        mask = _person(x=120 + 5 * i)
        colour = np.zeros((*mask.shape, 3), np.uint8)
        colour[mask > 0] = (0, 0, 255)  # BGR: red
        frames.append(colour)
    _write_frames(tmp_path / "w", frames)
    trained_on = to_network_input(load_raw_walk(tmp_path / "w").frames)
    np.testing.assert_array_equal(trained_on, decode_path(tmp_path / "w").frames)


def test_load_raw_walk_matches_the_shared_pretreatment(tmp_path: Path) -> None:
    frames = [_person(x=120 + 5 * i) for i in range(4)] + [np.zeros((240, 320), np.uint8)]
    _write_frames(tmp_path / "w", frames)
    walk = load_raw_walk(tmp_path / "w")
    expected = normalize_sequence(np.stack(frames))
    np.testing.assert_array_equal(walk.frames, expected.frames)
    assert (walk.total, walk.dropped, walk.frames.shape) == (5, 1, (4, 64, 64))


def test_binary_01_pngs_and_mixed_sizes_are_accepted(tmp_path: Path) -> None:
    _write_frames(tmp_path / "a", [_person(value=1), _person(value=1)])
    _write_frames(tmp_path / "b", [_person(), _person()])
    np.testing.assert_array_equal(
        load_raw_walk(tmp_path / "a").frames, load_raw_walk(tmp_path / "b").frames
    )
    _write_frames(tmp_path / "c", [_person(), _person(height=300, width=400)])
    assert load_raw_walk(tmp_path / "c").frames.shape == (2, 64, 64)


def test_iter_raw_walks_is_sorted_and_skips_empty_folders(tmp_path: Path) -> None:
    _write_frames(tmp_path / "002" / "nm-01" / "090", [_person()])
    _write_frames(tmp_path / "001" / "bg-01" / "000", [_person()])
    (tmp_path / "001" / "nm-01" / "018").mkdir(parents=True)
    keys = [key for key, _ in iter_raw_walks(tmp_path)]
    assert keys == [WalkKey("001", "bg-01", "000"), WalkKey("002", "nm-01", "090")]
    with pytest.raises(DatasetError, match="not a directory"):
        list(iter_raw_walks(tmp_path / "missing"))


def test_unreadable_png_is_named(tmp_path: Path) -> None:
    _write_frames(tmp_path / "w", [_person()])
    bad = tmp_path / "w" / "001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DatasetFormatError, match="readable PNG") as info:
        load_raw_walk(tmp_path / "w")
    assert info.value.path == tmp_path / "w" and str(bad) in str(info.value)
    assert isinstance(info.value.__cause__, CorruptUploadError)


def test_folder_without_frames_is_named(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    with pytest.raises(DatasetFormatError, match="no PNG/JPEG/BMP frames") as info:
        load_raw_walk(tmp_path / "w")
    assert info.value.path == tmp_path / "w"
    with pytest.raises(DatasetFormatError, match="does not exist"):
        load_raw_walk(tmp_path / "absent")


def test_too_few_usable_frames_names_the_folder_and_keeps_the_cause(tmp_path: Path) -> None:
    _write_frames(tmp_path / "w", [np.zeros((240, 320), np.uint8), _person()])
    with pytest.raises(DatasetFormatError, match="only 1 usable") as info:
        load_raw_walk(tmp_path / "w", min_frames=2)
    assert info.value.path == tmp_path / "w"
    assert isinstance(info.value.__cause__, TooFewFramesError)
