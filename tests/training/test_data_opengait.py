"""OpenGait layout reader/writer and partition file."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gaitid.training.data.errors import DatasetError, DatasetFormatError
from gaitid.training.data.opengait import (
    Partition,
    WalkKey,
    draw_walks,
    index_dataset,
    list_subjects,
    load_dataset,
    load_partition,
    load_walk,
    parse_subject_spec,
    save_partition,
    write_walk,
)
from tests.conftest import REPO_ROOT

EXPAND_TOOL = REPO_ROOT.parent / "shared" / "tools" / "casiab_expand.py"


def _walk(rng: np.random.Generator, frames: int = 5) -> np.ndarray:
    return rng.integers(0, 256, size=(frames, 64, 64), dtype=np.uint8)


def _pickle(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))
    return path


def test_write_then_load_round_trip_in_opengait_layout(tmp_path: Path, rng) -> None:
    frames = _walk(rng)
    path = write_walk(tmp_path, WalkKey("001", "nm-01", "090"), frames)
    assert path == tmp_path / "001" / "nm-01" / "090" / "090.pkl"
    np.testing.assert_array_equal(load_walk(path), frames)
    assert [p.name for p in path.parent.iterdir()] == ["090.pkl"]  # no temporary file left


def test_written_pickle_is_a_plain_numpy_array(tmp_path: Path, rng) -> None:
    frames = _walk(rng)
    path = write_walk(tmp_path, WalkKey("001", "nm-01", "000"), frames)
    with path.open("rb") as handle:
        raw = pickle.load(handle)
    assert type(raw) is np.ndarray and raw.dtype == np.uint8


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([[1, 2]], "numpy array"),
        (np.zeros((3, 64, 64), np.float32), "dtype uint8"),
        (np.zeros((3, 64, 44), np.uint8), "shape"),
        (np.zeros((64, 64), np.uint8), "shape"),
        (np.zeros((0, 64, 64), np.uint8), "shape"),
    ],
)
def test_load_walk_rejects_wrong_content_naming_the_path(
    tmp_path: Path, content: object, message: str
) -> None:
    path = _pickle(tmp_path / "s" / "nm-01" / "000" / "000.pkl", content)
    with pytest.raises(DatasetFormatError, match=message) as info:
        load_walk(path)
    assert info.value.path == path
    assert str(path) in str(info.value)


def test_load_walk_rejects_truncated_and_garbage_files(tmp_path: Path, rng) -> None:
    good = pickle.dumps(_walk(rng))
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"this is not a pickle")
    for path in (truncated, garbage, tmp_path / "missing.pkl"):
        with pytest.raises(DatasetFormatError) as info:
            load_walk(path)
        assert str(path) in str(info.value)


def test_write_walk_rejects_bad_arrays_before_writing(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="dtype uint8"):
        write_walk(tmp_path, WalkKey("001", "nm-01", "000"), np.zeros((2, 64, 64), np.int16))
    assert not any(tmp_path.rglob("*.pkl"))


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".hidden", "a\\b"])
def test_walk_key_rejects_names_that_are_not_folder_names(bad: str) -> None:
    with pytest.raises(DatasetError, match="WalkKey"):
        WalkKey("001", bad, "000")


def test_walk_key_condition_type_and_order() -> None:
    keys = [WalkKey("002", "nm-01", "000"), WalkKey("001", "nm-02", "090")]
    assert sorted(keys)[0].subject == "001"
    assert WalkKey("001", "cl-02", "000").condition_type == "cl"


def test_index_is_sorted_and_tolerates_missing_walks_and_stray_files(tmp_path: Path, rng) -> None:
    for key in [
        WalkKey("002", "nm-01", "090"),
        WalkKey("001", "nm-02", "000"),
        WalkKey("001", "nm-01", "180"),
    ]:
        write_walk(tmp_path, key, _walk(rng))
    (tmp_path / "001" / "nm-01" / "036").mkdir()  # a missing walk: empty view folder
    save_partition(Partition(train_set=["001"], test_set=["002"]), tmp_path / "partition.json")
    (tmp_path / "README").write_text("notes")
    _pickle(tmp_path / "002" / "bg-01" / "018" / "other-name.pkl", _walk(rng))  # the only pkl

    keys = [key for key, _ in index_dataset(tmp_path)]
    assert keys == [
        WalkKey("001", "nm-01", "180"),
        WalkKey("001", "nm-02", "000"),
        WalkKey("002", "bg-01", "018"),
        WalkKey("002", "nm-01", "090"),
    ]
    assert list_subjects(tmp_path) == ["001", "002"]


def test_index_rejects_ambiguous_walk_folder(tmp_path: Path, rng) -> None:
    folder = tmp_path / "001" / "nm-01" / "000"
    _pickle(folder / "a.pkl", _walk(rng))
    _pickle(folder / "b.pkl", _walk(rng))
    with pytest.raises(DatasetFormatError, match="2 pickles") as info:
        index_dataset(tmp_path)
    assert info.value.path == folder


def test_index_rejects_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a directory"):
        index_dataset(tmp_path / "nope")


def test_load_dataset_filters_subjects_and_rejects_unknown(tmp_path: Path, rng) -> None:
    for subject in ("001", "002", "003"):
        write_walk(tmp_path, WalkKey(subject, "nm-01", "000"), _walk(rng, 3))
    walks = load_dataset(tmp_path, subjects=["001", "003"])
    assert sorted(k.subject for k in walks) == ["001", "003"]
    assert all(v.dtype == np.uint8 and v.shape == (3, 64, 64) for v in walks.values())
    with pytest.raises(DatasetError, match=r"\['009'\]"):
        load_dataset(tmp_path, subjects=["001", "009"])


def test_partition_round_trip_uses_opengait_keys(tmp_path: Path) -> None:
    partition = Partition(train_set=["001", "002"], test_set=["003"])
    path = save_partition(partition, tmp_path / "p.json")
    assert json.loads(path.read_text()) == {"TRAIN_SET": ["001", "002"], "TEST_SET": ["003"]}
    assert load_partition(path) == partition


def test_load_partition_reads_opengait_file(tmp_path: Path) -> None:
    path = tmp_path / "CASIA-B.json"
    path.write_text(json.dumps({"TRAIN_SET": ["001"], "TEST_SET": ["075", "076"]}))
    assert load_partition(path).test_set == ["075", "076"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"TRAIN_SET": ["001"]}', "TEST_SET"),
        ('{"TRAIN_SET": ["001"], "TEST_SET": [], "VAL_SET": []}', "VAL_SET"),
        ('{"TRAIN_SET": ["001"], "TEST_SET": ["001"]}', "both"),
        ('{"TRAIN_SET": ["001", "001"], "TEST_SET": []}', "more than once"),
        ('{"TRAIN_SET": "001", "TEST_SET": []}', "TRAIN_SET"),
        ("[1, 2]", "partition"),
    ],
)
def test_load_partition_rejects_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(DatasetFormatError, match=message) as info:
        load_partition(path)
    assert info.value.path == path


def test_parse_subject_spec() -> None:
    assert parse_subject_spec("063-066") == ["063", "064", "065", "066"]
    assert parse_subject_spec("001, 005-006,001") == ["001", "005", "006"]
    for bad in ("009-001", "a-b", " , "):
        with pytest.raises(DatasetError):
            parse_subject_spec(bad)


@pytest.mark.real_data
def test_reader_loads_real_casia_b_expanded_by_the_shared_tool(
    casia_b_train_dir: Path, tmp_path: Path
) -> None:
    """Subject 005 lacks every 000 walk in the real data: the reader must cope."""
    source = tmp_path / "npz"
    source.mkdir()
    for subject in ("005", "063"):
        shutil.copy(casia_b_train_dir / f"{subject}.npz", source / f"{subject}.npz")
    expanded = tmp_path / "opengait"
    subprocess.run(
        [sys.executable, str(EXPAND_TOOL), str(source), str(expanded)],
        check=True,
        capture_output=True,
    )
    index = index_dataset(expanded)
    for subject in ("005", "063"):
        with np.load(source / f"{subject}.npz") as npz:
            keys = {WalkKey(subject, *name.split("/")) for name in npz.files}
            assert {k for k, _ in index if k.subject == subject} == keys
            for key, path in index:
                if key.subject == subject and key.condition in ("nm-01", "cl-02"):
                    np.testing.assert_array_equal(
                        load_walk(path), npz[f"{key.condition}/{key.view}"]
                    )
    assert not any(k.subject == "005" and k.view == "000" for k, _ in index)


def test_a_draw_of_walks_is_fixed_by_its_seed(synthetic_root: Path) -> None:
    one = draw_walks(synthetic_root, ["001", "002"], 4, seed=5)
    again = draw_walks(synthetic_root, ["001", "002"], 4, seed=5)
    assert len(one) == 4 and all(np.array_equal(a, b) for a, b in zip(one, again, strict=True))
    everything = load_dataset(synthetic_root, ["001", "002"])
    assert all(any(np.array_equal(w, v) for v in everything.values()) for w in one)
    assert len(draw_walks(synthetic_root, None, 1000, seed=0)) == len(load_dataset(synthetic_root))
    with pytest.raises(DatasetError, match="no walks"):
        draw_walks(synthetic_root, ["099"], 4, seed=0)
