"""Synthetic walkers: config, determinism, identities, views, bag and coat, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from gaitid.training.baselines.gei import gait_energy_image
from gaitid.training.cli import register
from gaitid.training.data.opengait import WalkKey, load_dataset, load_partition
from gaitid.training.synth.dataset import (
    SynthConfig,
    _walk_rng,
    generate_dataset,
    render_walk,
    subject_identity,
)
from gaitid.training.synth.kinematics import Capsule, Hull, pose_walk
from tests.utils.synthetic import make_synthetic_dataset

TINY = {"min_frames": 10, "max_frames": 12}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synth") / "data")


def _gei(frames: np.ndarray) -> np.ndarray:
    return gait_energy_image(frames).reshape(-1)


def test_output_loads_through_the_opengait_reader(tiny_dataset: Path) -> None:
    walks = load_dataset(tiny_dataset)
    assert len(walks) == 3 * 3 * 4
    assert {k.view for k in walks} == {"000", "090", "180"}
    assert {k.condition for k in walks} == {"nm-01", "nm-02", "bg-01", "cl-01"}
    for frames in walks.values():
        assert frames.dtype == np.uint8 and frames.shape[1:] == (64, 64)
        assert 12 <= frames.shape[0] <= 18
        assert frames.max() == 255 and frames[:, :, :10].max() < 255  # centred, not clipped
    partition = load_partition(tiny_dataset / "partition.json")
    assert partition.train_set == ["001", "002"] and partition.test_set == ["003"]


def test_same_seed_same_dataset_other_seed_other_dataset(tmp_path: Path) -> None:
    a = load_dataset(
        make_synthetic_dataset(tmp_path / "a", subjects=2, views=(54,), conditions=("nm-01",))
    )
    b = load_dataset(
        make_synthetic_dataset(tmp_path / "b", subjects=2, views=(54,), conditions=("nm-01",))
    )
    c = load_dataset(
        make_synthetic_dataset(
            tmp_path / "c", subjects=2, views=(54,), conditions=("nm-01",), seed=1
        )
    )
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].shape != c[key].shape or not np.array_equal(a[key], c[key])


def test_a_walk_does_not_depend_on_what_else_is_generated(tmp_path: Path) -> None:
    small = load_dataset(
        make_synthetic_dataset(tmp_path / "s", subjects=1, views=(90,), conditions=("bg-01",))
    )
    large = load_dataset(
        make_synthetic_dataset(
            tmp_path / "l", subjects=2, views=(0, 90), conditions=("nm-01", "bg-01")
        )
    )
    key = WalkKey("001", "bg-01", "090")
    np.testing.assert_array_equal(small[key], large[key])


def test_identities_differ_more_than_walks_of_one_identity(tiny_dataset: Path) -> None:
    walks = load_dataset(tiny_dataset)
    for view in ("000", "090"):
        same = [
            np.linalg.norm(
                _gei(walks[WalkKey(s, "nm-01", view)]) - _gei(walks[WalkKey(s, "nm-02", view)])
            )
            for s in ("001", "002", "003")
        ]
        other = [
            np.linalg.norm(
                _gei(walks[WalkKey(a, "nm-01", view)]) - _gei(walks[WalkKey(b, "nm-02", view)])
            )
            for a, b in (("001", "002"), ("002", "003"), ("003", "001"))
        ]
        assert np.mean(same) < np.mean(other)
    first, second = subject_identity(0, 0), subject_identity(0, 1)
    assert first.body != second.body and first.style != second.style


def test_views_differ_more_than_walks_within_a_view(tiny_dataset: Path) -> None:
    walks = load_dataset(tiny_dataset)
    for subject in ("001", "002", "003"):
        within = np.linalg.norm(
            _gei(walks[WalkKey(subject, "nm-01", "090")])
            - _gei(walks[WalkKey(subject, "nm-02", "090")])
        )
        across = np.linalg.norm(
            _gei(walks[WalkKey(subject, "nm-01", "000")])
            - _gei(walks[WalkKey(subject, "nm-01", "090")])
        )
        assert across > 1.5 * within


@pytest.mark.parametrize(
    ("view", "conditions"),
    # seen from the front, subject 001's backpack hides behind its body, as a real one does
    [(0, ("cl-01",)), (90, ("bg-01", "cl-01")), (144, ("bg-01", "cl-01"))],
)
def test_bag_and_coat_add_to_the_silhouette(view: int, conditions: tuple[str, ...]) -> None:
    """Same walker, same randomness: only the condition changes, so masks only grow."""
    config = SynthConfig(subjects=1, noise=False, **TINY)
    identity = subject_identity(0, 0)
    masks = {
        condition: render_walk(identity, condition, view, _walk_rng(0, 0, "nm-01", view), config)
        for condition in ("nm-01", "bg-01", "cl-01")
    }
    plain = masks["nm-01"] > 0
    for condition in conditions:
        dressed = masks[condition] > 0
        assert dressed.shape == plain.shape
        # rasterising a larger polygon may round a stray edge pixel the other way
        lost = np.count_nonzero(plain & ~dressed)
        assert lost <= 1e-3 * plain.sum(), f"{condition} removed {lost} body pixels"
        assert dressed.sum() > 1.03 * plain.sum(), f"{condition} barely changed the silhouette"


def test_feet_touch_the_ground_every_frame() -> None:
    identity = subject_identity(3, 0)
    primitives = pose_walk(identity, "nm", 30, 0.2)
    lowest = np.full(30, np.inf)
    for p in primitives:
        if isinstance(p, Capsule):
            lowest = np.minimum(lowest, np.minimum(p.a[:, 2] - p.ra, p.b[:, 2] - p.rb))
        else:
            assert isinstance(p, Hull)
            lowest = np.minimum(lowest, p.points[:, :, 2].min(axis=1))
    np.testing.assert_allclose(lowest, 0.0, atol=1e-9)


def test_pose_walk_rejects_impossible_requests() -> None:
    identity = subject_identity(0, 0)
    with pytest.raises(ValueError, match="n_frames"):
        pose_walk(identity, "nm", 0, 0.0)
    with pytest.raises(ValueError, match="bag"):
        pose_walk(identity, "bg", 5, 0.0)


def test_raw_frames_are_camera_sized_pngs(tmp_path: Path) -> None:
    config = SynthConfig(subjects=1, views=(18,), conditions=("nm-01",), **TINY)
    report = generate_dataset(config, tmp_path / "og", raw_root=tmp_path / "raw")
    pngs = sorted((tmp_path / "raw" / "001" / "nm-01" / "018").glob("*.png"))
    assert len(pngs) == report.frames + report.dropped
    import cv2

    frame = cv2.imread(str(pngs[0]), cv2.IMREAD_GRAYSCALE)
    assert frame.shape == (240, 320) and set(np.unique(frame)) <= {0, 255}


@pytest.mark.parametrize(
    "settings",
    [
        {"subjects": 0},
        {"subjects": 1, "views": (200,)},
        {"subjects": 1, "views": (0, 0)},
        {"subjects": 1, "conditions": ("xx-01",)},
        {"subjects": 1, "conditions": ("nm-00",)},
        {"subjects": 1, "min_frames": 20, "max_frames": 10},
        {"subjects": 1, "colour": "red"},
    ],
)
def test_config_rejects_bad_settings(settings: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SynthConfig.model_validate(settings)


def test_partition_always_has_both_splits_when_possible() -> None:
    assert SynthConfig(subjects=2).partition().test_set == ["002"]
    assert len(SynthConfig(subjects=10).partition().train_set) == 6
    assert SynthConfig(subjects=1000).subject_ids()[-1] == "1000"


def test_synth_command(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)
    args = [
        "synth",
        "--subjects",
        "1",
        "--out",
        str(tmp_path / "d"),
        "--views",
        "0,90",
        "--conditions",
        "nm-01",
        "--min-frames",
        "8",
        "--max-frames",
        "9",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 2 walks" in result.output
    assert sorted(k.view for k in load_dataset(tmp_path / "d")) == ["000", "090"]
    bad = CliRunner().invoke(app, [*args[:5], "--views", "0,x"])
    assert bad.exit_code != 0 and "views" in bad.output
