"""GEI baseline and its minimal CASIA-B rank-1 protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from gaitid.training.baselines.gei import (
    casia_b_rank1,
    euclidean_distances,
    gait_energy_image,
    gei_baseline,
    gei_features,
)
from gaitid.training.cli import register
from gaitid.training.data.opengait import WalkKey
from tests.utils.synthetic import make_synthetic_dataset


def test_gei_is_the_mean_of_the_middle_crop() -> None:
    frames = np.zeros((2, 64, 64), np.uint8)
    frames[0, :, 10:54] = 255  # the whole 64x44 window lit in frame 0 only
    frames[:, :, :10] = 255  # columns the network never sees
    gei = gait_energy_image(frames)
    assert gei.shape == (64, 44) and gei.dtype == np.float32
    np.testing.assert_allclose(gei, 0.5)


def test_euclidean_distances_match_direct_computation(rng) -> None:
    a, b = rng.normal(size=(4, 7)), rng.normal(size=(3, 7))
    direct = np.linalg.norm(a[:, None] - b[None], axis=-1)
    np.testing.assert_allclose(euclidean_distances(a, b), direct, atol=1e-9)


def _hand_built() -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """Two subjects (1 near 0, 2 near 10) at views a/b, features on one axis."""
    positions = {
        ("1", "nm-01", "a"): 0.0,
        ("1", "nm-01", "b"): 1.0,
        ("2", "nm-01", "a"): 10.0,
        ("2", "nm-01", "b"): 11.0,
        ("1", "nm-05", "a"): 0.2,
        ("1", "nm-05", "b"): 1.2,
        ("2", "nm-05", "a"): 10.2,
        ("2", "nm-05", "b"): 11.2,
        ("1", "bg-01", "a"): 0.3,
        ("1", "bg-01", "b"): 1.3,
        # 4.2 from its own gallery walk at view a, but 4.8 vs 5.2 at view b: a miss there
        ("2", "bg-01", "a"): 5.8,
        ("2", "bg-01", "b"): 11.3,
    }
    labels, conditions, views = (list(x) for x in zip(*positions, strict=True))
    features = np.array([[x, 0.0] for x in positions.values()])
    return features, labels, conditions, views


def test_rank1_on_hand_built_features() -> None:
    features, labels, conditions, views = _hand_built()
    table = casia_b_rank1(
        features,
        labels,
        conditions,
        views,
        gallery_conditions=("nm-01",),
        probe_groups={"NM": ("nm-05",), "BG": ("bg-01",), "CL": ("cl-01",)},
    )
    assert table.views == ("a", "b")
    np.testing.assert_allclose(table.accuracy["NM"], [[100, 100], [100, 100]])
    np.testing.assert_allclose(table.accuracy["BG"], [[100, 50], [100, 100]])
    np.testing.assert_allclose(table.per_probe_view("BG"), [50, 100])
    assert table.cross_view("BG") == pytest.approx(75.0)
    assert table.same_view("BG") == pytest.approx(100.0)
    assert np.isnan(table.cross_view("CL"))  # no probe walk in that group


def test_rank1_counts_a_probe_whose_subject_is_absent_from_the_gallery_view_as_miss() -> None:
    features, labels, conditions, views = _hand_built()
    keep = [
        i
        for i in range(len(labels))
        if not (labels[i] == "2" and conditions[i] == "nm-01" and views[i] == "b")
    ]
    table = casia_b_rank1(
        features[keep],
        [labels[i] for i in keep],
        [conditions[i] for i in keep],
        [views[i] for i in keep],
        gallery_conditions=("nm-01",),
        probe_groups={"NM": ("nm-05",)},
    )
    assert table.accuracy["NM"][0, 1] == pytest.approx(50.0)


def test_rank1_rejects_inconsistent_inputs() -> None:
    features, labels, conditions, views = _hand_built()
    with pytest.raises(ValueError, match="labels"):
        casia_b_rank1(features, labels[:-1], conditions, views)
    with pytest.raises(ValueError, match="no gallery walk"):
        casia_b_rank1(features, labels, conditions, views, gallery_conditions=("nm-02",))
    with pytest.raises(ValueError, match="reuses gallery"):
        casia_b_rank1(
            features,
            labels,
            conditions,
            views,
            gallery_conditions=("nm-01",),
            probe_groups={"NM": ("nm-01",)},
        )


@pytest.fixture(scope="module")
def protocol_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("gei") / "data",
        subjects=3,
        views=(72, 108),
        conditions=("nm-01", "nm-02", "nm-05", "bg-01", "cl-01"),
        frames=(10, 12),
    )


def test_gei_baseline_on_synthetic_walks(protocol_dataset: Path) -> None:
    from gaitid.training.data.opengait import load_dataset

    walks = load_dataset(protocol_dataset)
    data = gei_features(walks)
    assert data.features.shape == (len(walks), 64 * 44)
    assert data.labels[0] == "001" and WalkKey("001", "bg-01", "072") in walks
    table = gei_baseline(walks)
    for group in ("NM", "BG", "CL"):
        assert 0.0 <= table.cross_view(group) <= 100.0
    assert table.same_view("NM") >= table.cross_view("CL")


def test_gei_baseline_command(protocol_dataset: Path) -> None:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app, ["gei-baseline", str(protocol_dataset), "--subjects", "001-003"]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "3 subjects" in lines[0]
    assert [line.split()[0] for line in lines[2:5]] == ["NM", "BG", "CL"]
    by_partition = CliRunner().invoke(
        app,
        [
            "gei-baseline",
            str(protocol_dataset),
            "--partition",
            str(protocol_dataset / "partition.json"),
        ],
    )
    assert by_partition.exit_code == 0 and "1 subjects" in by_partition.output
    missing = CliRunner().invoke(app, ["gei-baseline", str(protocol_dataset), "--subjects", "007"])
    assert missing.exit_code == 2 and "007" in missing.output
