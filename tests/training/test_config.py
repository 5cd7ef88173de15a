"""The training config: unknown keys rejected, paths relative to the file, shipped configs load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gaitid.training.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_paths_resolve_against_the_config_file_not_the_cwd(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "cfg").mkdir()
    path = _write(
        tmp_path / "cfg" / "a.yaml",
        {"data": {"root": "../data", "partition": "p.json"}, "output_dir": "../runs/a"},
    )
    monkeypatch.chdir("/")
    cfg = load_config(path)
    assert cfg.data.root == (tmp_path / "data").resolve()
    assert cfg.data.partition == (tmp_path / "cfg" / "p.json").resolve()
    assert cfg.output_dir == (tmp_path / "runs" / "a").resolve()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"data": {"root": "d"}, "sampler": {"p": 8, "kk": 8}}, "kk"),
        ({"data": {"root": "d"}, "learning_rate": 0.1}, "learning_rate"),
        ({"data": {"root": "d", "frames": 0}}, "frames"),
        ({"data": {"root": "d"}, "model": {"variant": "huge"}}, "variant"),
        ({"data": {"root": "d"}, "schedule": {"iterations": 10, "milestones": [20]}}, r"\[20\]"),
        ({"data": {"root": "d"}, "schedule": {"milestones": [5, 3]}}, "strictly increasing"),
        ({"data": {"root": "d", "partition": "p", "train_subjects": ["1"]}}, "not both"),
    ],
)
def test_bad_configs_are_rejected_naming_the_key(tmp_path: Path, data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path / "bad.yaml", data))


def test_missing_or_non_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")


def test_overrides_are_validated_too(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.yaml", {"data": {"root": "d"}})
    assert load_config(path, {"sampler": {"p": 4}}).sampler.p == 4
    with pytest.raises(ConfigError, match="q"):
        load_config(path, {"sampler": {"q": 4}})


def test_model_overrides_are_checked_when_the_config_loads(tmp_path: Path) -> None:
    """Issue 16: a misspelt or impossible network override fails at load, naming the field."""
    path = _write(tmp_path / "a.yaml", {"data": {"root": "d"}, "model": {"variant": "tiny"}})
    assert load_config(path, {"model": {"overrides": {"parts": 2}}}).model.overrides == {"parts": 2}
    with pytest.raises(ConfigError, match="partz"):
        load_config(path, {"model": {"overrides": {"partz": 2}}})
    with pytest.raises(ConfigError, match="parts"):
        load_config(path, {"model": {"overrides": {"parts": 3}}})  # does not divide the map


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.output_dir is not None and cfg.output_dir.is_absolute()
    if cfg.data.partition is not None and cfg.data.partition.is_relative_to(REPO / "configs"):
        assert cfg.data.partition.is_file(), f"{path.name} names a missing partition file"


def test_paper_config_follows_table_ii() -> None:
    cfg = load_config(REPO / "configs" / "casia-b-paper.yaml")
    assert (cfg.sampler.p, cfg.sampler.k, cfg.data.frames) == (8, 8, 30)
    assert cfg.optimizer.name == "adam" and cfg.optimizer.lr == pytest.approx(1e-4)
    assert cfg.schedule.iterations == 80_000 and cfg.schedule.milestones == [70_000]
    assert cfg.schedule.gamma == pytest.approx(0.1) and cfg.loss.margin == pytest.approx(0.2)
    stage_b = load_config(REPO / "configs" / "casia-b-paper-stage-b.yaml")
    assert stage_b.schedule.iterations == 30_000 and stage_b.schedule.milestones == []
    assert stage_b.init is not None and stage_b.optimizer.lr == pytest.approx(1e-4)
