"""Settings: GAITID_ environment, defaults in the per-user data dir, rejected bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gaitid.service import config as service_config
from gaitid.service.config import Settings, default_data_dir


def test_defaults_live_in_the_user_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    settings = Settings()
    assert settings.data_dir == tmp_path / "xdg" / "gaitid"
    assert (
        settings.resolved_database_url == f"sqlite:///{tmp_path / 'xdg' / 'gaitid' / 'gaitid.db'}"
    )
    monkeypatch.setattr(service_config, "SHIPPED_MODEL", tmp_path / "no-shipped-model.onnx")
    assert settings.resolved_model_path == tmp_path / "xdg" / "gaitid" / "model.onnx"
    assert settings.store_silhouettes is False
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".local" / "share" / "gaitid"


def test_environment_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAITID_DATABASE_URL", "postgresql+psycopg://u@db/gaitid")
    monkeypatch.setenv("GAITID_INDEX_KIND", "hnsw")
    monkeypatch.setenv("GAITID_BATCHING_ENABLED", "false")
    monkeypatch.setenv("GAITID_MAX_UPLOAD_BYTES", "1048576")
    monkeypatch.setenv("GAITID_MODEL_PATH", str(tmp_path / "m.onnx"))
    settings = Settings()
    assert settings.resolved_database_url == "postgresql+psycopg://u@db/gaitid"
    assert settings.index_kind == "hnsw" and settings.batching_enabled is False
    assert settings.max_request_bytes == 1048576 + settings.form_overhead_bytes
    assert settings.resolved_model_path == tmp_path / "m.onnx"


def test_relative_paths_are_resolved_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(model_path=Path("m.onnx"), data_dir=Path("d"))
    assert settings.model_path == tmp_path / "m.onnx" and settings.data_dir == tmp_path / "d"


@pytest.mark.parametrize(
    "bad",
    [
        {"index_kind": "annoy"},
        {"device": "tpu"},
        {"batch_max_size": 0},
        {"request_timeout_s": 0},
        {"fallback_threshold": 1.5},
        {"port": 70000},
        {"index_use_gpu": "maybe"},
        {"model_precision": "fp16"},
        {"no_such_setting": 1},
    ],
)
def test_bad_values_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        Settings(**bad)  # type: ignore[arg-type]


def test_gpu_flag_forms() -> None:
    assert Settings(index_use_gpu="auto").use_gpu_index == "auto"
    assert Settings(index_use_gpu="true").use_gpu_index is True
    assert Settings(index_use_gpu="false").use_gpu_index is False


def test_database_url_can_come_from_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "db-url"
    secret.write_text("postgresql+psycopg://gaitid:s3cret@db:5432/gaitid\n")
    settings = Settings(data_dir=tmp_path, database_url_file=secret)
    assert settings.resolved_database_url == "postgresql+psycopg://gaitid:s3cret@db:5432/gaitid"


@pytest.mark.parametrize("content", [None, ""])
def test_database_url_file_missing_or_empty_is_rejected(
    tmp_path: Path, content: str | None
) -> None:
    secret = tmp_path / "db-url"
    if content is not None:
        secret.write_text(content)
    with pytest.raises(ValidationError, match="GAITID_DATABASE_URL_FILE"):
        Settings(data_dir=tmp_path, database_url_file=secret)


def test_database_url_and_its_file_are_exclusive(tmp_path: Path) -> None:
    secret = tmp_path / "db-url"
    secret.write_text("sqlite:///x.db")
    with pytest.raises(ValidationError, match="not both"):
        Settings(data_dir=tmp_path, database_url="sqlite:///y.db", database_url_file=secret)


def test_ivf_nprobe_above_nlist_is_rejected_at_load(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="GAITID_INDEX_NPROBE"):
        Settings(data_dir=tmp_path, index_nlist=8, index_nprobe=16)


def _fake_shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str, name: str) -> Path:
    """A stand-in file for the shipped model ``setting`` names, under ``tmp_path/models``."""
    shipped = tmp_path / "models" / name
    shipped.parent.mkdir(exist_ok=True)
    shipped.write_bytes(b"onnx")
    monkeypatch.setattr(service_config, setting, shipped)
    return shipped


def test_the_shipped_model_serves_unless_one_is_placed_or_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = _fake_shipped(tmp_path, monkeypatch, "SHIPPED_MODEL", "gaitid-lmgcs.onnx")
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.resolved_model_path == shipped
    placed = tmp_path / "data" / "model.onnx"
    placed.parent.mkdir()
    placed.write_bytes(b"onnx")
    assert settings.resolved_model_path == placed
    assert Settings(model_path=tmp_path / "m.onnx").resolved_model_path == tmp_path / "m.onnx"


def test_precision_picks_the_shipped_int8_model_and_only_a_shipped_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    int8 = _fake_shipped(tmp_path, monkeypatch, "SHIPPED_MODEL_INT8", "gaitid-lmgcs.int8.onnx")
    settings = Settings(data_dir=tmp_path / "data", model_precision="int8")
    assert settings.resolved_model_path == int8
    with pytest.raises(ValidationError, match="GAITID_MODEL_PRECISION"):
        Settings(model_path=tmp_path / "m.onnx", model_precision="int8")


def test_the_shipped_model_path_points_into_the_source_tree() -> None:
    root = Path(__file__).resolve().parents[2]
    assert root / "models" / "gaitid-lmgcs.onnx" == service_config.SHIPPED_MODEL
    assert root / "models" / "gaitid-lmgcs.int8.onnx" == service_config.SHIPPED_MODEL_INT8


def test_embed_chunks_must_fit_a_batch(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="GAITID_MAX_EMBED_FRAMES"):
        Settings(data_dir=tmp_path, batch_max_frames=128, max_embed_frames=256)
