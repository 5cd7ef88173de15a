"""A trained checkpoint exports (`gaitid export`) to the ONNX contract, same embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES, OUTPUT_EMBEDDING, batch_sequences
from tests.utils.nested import strings_in


def test_trained_checkpoint_exports_and_matches_torch(
    uninterrupted: Path, exported: Path, rng: np.random.Generator
) -> None:
    import onnx
    import onnxruntime as ort
    import torch

    from gaitid.model.export import load_checkpoint_model
    from gaitid.training.evaluation.extract import torch_features

    walks = [(rng.random((t, 64, 44)) > 0.5).astype(np.uint8) * 255 for t in (9, 14, 30)]
    silhouettes, lengths = batch_sequences(walks)
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (onnx_emb,) = session.run(
        [OUTPUT_EMBEDDING], {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}
    )
    model, state = load_checkpoint_model(uninterrupted / "checkpoints" / "last.pt")
    # the PyTorch evaluation averages the same test-time shifts the export's graph holds
    embeddings, _parts = torch_features(model, walks, device=torch.device("cpu"))
    np.testing.assert_allclose(onnx_emb, embeddings, atol=1e-4)
    with torch.inference_mode():
        alone = model(torch.from_numpy(silhouettes), torch.from_numpy(lengths)).embedding
    assert not np.allclose(onnx_emb, alone.numpy(), atol=1e-4)  # the shifts are in the graph
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert meta["test_time_shifts"] == "cross"
    assert meta["variant"] == "tiny" and "001..002" in meta["training_data"]
    assert meta["iteration"] == "4" and state["meta"]["iteration"] == 4


def test_calibrated_export_carries_its_threshold_and_ships_clean_weights(
    uninterrupted: Path, exported: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    import json

    import onnx
    import torch
    from typer.testing import CliRunner

    from gaitid.cli import app
    from gaitid.model.export import load_checkpoint_model
    from gaitid.service.walks.inference import Embedder

    runner = CliRunner()
    cal = tmp_path / "cal"
    result = runner.invoke(
        app,
        [
            "eval",
            str(exported),
            "--data",
            str(synthetic_root),
            "--protocol",
            "open-set",
            "--target-fmr",
            "0.01",
            "--out",
            str(cal),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Default threshold" in result.output and "DIR % at FAR 1 %" in result.output
    record = json.loads((cal / "calibration.json").read_text())
    assert record["model"] == exported.name and record["target_fmr"] == 0.01
    assert (cal / "det.png").stat().st_size > 1000

    onnx_out, weights = tmp_path / "m.onnx", tmp_path / "m.pt"
    ckpt = uninterrupted / "checkpoints" / "last.pt"
    result = runner.invoke(
        app,
        [
            "export",
            str(ckpt),
            "--out",
            str(onnx_out),
            "--threshold-from",
            str(cal / "calibration.json"),
            "--weights",
            str(weights),
        ],
    )
    assert result.exit_code == 0, result.output
    meta = {p.key: p.value for p in onnx.load(str(onnx_out)).metadata_props}
    assert float(meta["default_threshold"]) == pytest.approx(record["threshold"], abs=1e-6)
    assert json.loads(meta["threshold_calibration"])["target_fmr"] == 0.01
    info = Embedder(onnx_out, device="cpu").info  # what the service reads
    assert info.default_threshold == pytest.approx(record["threshold"], abs=1e-5)
    for value in meta.values():
        assert str(synthetic_root) not in value and str(tmp_path) not in value

    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert set(state) == {"model", "model_config", "num_classes", "meta", "recipe", "labels"}
    local = [s for s in strings_in(state) if "/" in s and Path(s).is_absolute()]
    assert local == []
    model, _ = load_checkpoint_model(weights)  # the one checkpoint loader reads it
    reference, _ = load_checkpoint_model(ckpt)
    for key, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor)
    assert weights.stat().st_size < ckpt.stat().st_size  # no optimiser state
    # exporting the weights file again keeps the threshold it carries, and writing its
    # weights again keeps everything the first weights file held (recipe, labels, iteration)
    again, again_weights = tmp_path / "again.onnx", tmp_path / "again.pt"
    result = runner.invoke(
        app, ["export", str(weights), "--out", str(again), "--weights", str(again_weights)]
    )
    assert result.exit_code == 0, result.output
    meta_again = {p.key: p.value for p in onnx.load(str(again)).metadata_props}
    for key in ("default_threshold", "threshold_calibration", "iteration", "version"):
        assert meta_again[key] == meta[key], key
    state_again = torch.load(again_weights, map_location="cpu", weights_only=True)
    for key in ("recipe", "labels", "num_classes", "model_config", "meta"):
        assert state_again[key] == state[key], key

    bad = runner.invoke(
        app,
        [
            "export",
            "--random-init",
            "tiny",
            "--out",
            str(tmp_path / "r.onnx"),
            "--threshold-from",
            str(cal / "calibration.json"),
        ],
    )
    assert bad.exit_code == 2 and "trained checkpoint" in bad.output


def test_export_writes_the_chosen_backbone_layout(tmp_path: Path) -> None:
    import onnx
    from typer.testing import CliRunner

    from gaitid.cli import build_app

    runner, app = CliRunner(), build_app()
    weight_ranks = {}
    for layout in ("tiled", "conv3d"):
        out = tmp_path / f"{layout}.onnx"
        args = ["export", "--random-init", "tiny", "--out", str(out)]
        result = runner.invoke(app, [*args, "--backbone-layout", layout])
        assert result.exit_code == 0, result.output
        weight_ranks[layout] = {len(t.dims) for t in onnx.load(str(out)).graph.initializer}
    assert 5 in weight_ranks["conv3d"]  # 3-D convolution kernels as they are
    assert 5 not in weight_ranks["tiled"]  # only 2-D convolutions
    args = ["export", "--random-init", "tiny", "--out", str(tmp_path / "x.onnx")]
    bad = runner.invoke(app, [*args, "--backbone-layout", "sideways"])
    assert bad.exit_code == 2 and "unknown layout" in bad.output


def _calibration(folder: Path, name: str, threshold: float, **extra: object) -> Path:
    """A ``calibration.json`` as `gaitid eval --protocol open-set` writes it."""
    import json

    path = folder / name
    record = {"threshold": threshold, "target_fmr": 0.001, "model": "m", "subjects": ["3"]}
    record["test_time_shifts"] = "cross"  # what an export averages by default
    path.write_text(json.dumps({**record, **extra}))
    return path


def _export_thresholds(
    ckpt: Path, out: Path, silhouettes: Path, clips: Path, *more: str
) -> tuple[Any, dict[str, str]]:
    """`gaitid export CKPT` with both calibrations: the CLI result and the ONNX metadata."""
    import onnx
    from typer.testing import CliRunner

    from gaitid.cli import app

    args = ["--threshold-from", str(silhouettes), "--clip-threshold-from", str(clips), *more]
    result = CliRunner().invoke(app, ["export", str(ckpt), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return result, {p.key: p.value for p in onnx.load(str(out)).metadata_props}


def test_export_stores_a_clip_threshold_beside_the_default(
    uninterrupted: Path, tmp_path: Path
) -> None:
    """`--clip-threshold-from` writes ``clip_threshold`` and its record, the service reads it,
    the weights file carries it to the next export, and a random-init export refuses it."""
    import json

    import onnx
    from typer.testing import CliRunner

    from gaitid.cli import app
    from gaitid.service.walks.inference import Embedder

    def calibration(name: str, threshold: float) -> Path:
        return _calibration(tmp_path, name, threshold)

    runner = CliRunner()
    ckpt = str(uninterrupted / "checkpoints" / "last.pt")
    onnx_out, weights = tmp_path / "m.onnx", tmp_path / "m.pt"
    _, meta = _export_thresholds(
        Path(ckpt),
        onnx_out,
        calibration("silhouettes.json", 0.48),
        calibration("clips.json", 0.41),
        "--weights",
        str(weights),
    )
    assert (meta["default_threshold"], meta["clip_threshold"]) == ("0.480000", "0.410000")
    record = json.loads(meta["clip_threshold_calibration"])
    assert record["target_fmr"] == 0.001 and record["calibrated_on"] == "m, subjects 3"
    info = Embedder(onnx_out, device="cpu").info  # what the service reads
    assert (info.default_threshold, info.clip_threshold) == (0.48, 0.41)

    again = tmp_path / "again.onnx"  # the weights file carries both thresholds
    result = runner.invoke(app, ["export", str(weights), "--out", str(again)])
    assert result.exit_code == 0, result.output
    meta_again = {p.key: p.value for p in onnx.load(str(again)).metadata_props}
    for key in ("clip_threshold", "clip_threshold_calibration", "default_threshold", "iteration"):
        assert meta_again[key] == meta[key]

    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    bad = runner.invoke(
        app,
        ["export", ckpt, "--out", str(tmp_path / "b.onnx"), "--clip-threshold-from", str(broken)],
    )
    assert bad.exit_code == 2 and "--clip-threshold-from" in bad.output
    args = ["export", "--random-init", "tiny", "--out", str(tmp_path / "r.onnx")]
    bad = runner.invoke(app, [*args, "--clip-threshold-from", str(calibration("c.json", 0.4))])
    assert bad.exit_code == 2 and "trained checkpoint" in bad.output


def test_a_threshold_holds_only_for_the_shift_set_it_was_measured_with(
    uninterrupted: Path, tmp_path: Path
) -> None:
    """A calibration of the network alone is refused by an export that averages shifts (and
    taken by one that does not); weights whose threshold was measured with one set do not
    carry it into an export with another."""
    import onnx
    from typer.testing import CliRunner

    from gaitid.cli import app

    runner = CliRunner()
    ckpt = str(uninterrupted / "checkpoints" / "last.pt")
    alone = _calibration(tmp_path, "alone.json", 0.45, test_time_shifts="none")
    out, weights = tmp_path / "m.onnx", tmp_path / "m.pt"
    bad = runner.invoke(app, ["export", ckpt, "--out", str(out), "--threshold-from", str(alone)])
    assert bad.exit_code == 2 and "shift set 'none'" in bad.output and not out.exists()
    args = ["--threshold-from", str(alone), "--shifts", "none", "--weights", str(weights)]
    good = runner.invoke(app, ["export", ckpt, "--out", str(out), *args])
    assert good.exit_code == 0, good.output
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert (meta["test_time_shifts"], meta["default_threshold"]) == ("none", "0.450000")

    crossed = tmp_path / "crossed.onnx"  # the weights' threshold is the network alone's
    unnamed = runner.invoke(app, ["export", str(weights), "--out", str(crossed)])
    said = " ".join(unnamed.output.replace("│", " ").split())  # the error box, unwrapped
    assert unnamed.exit_code == 2 and "its own --version" in said
    args = ["export", str(weights), "--out", str(crossed), "--version", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "left out" in result.output
    meta = {p.key: p.value for p in onnx.load(str(crossed)).metadata_props}
    assert meta["test_time_shifts"] == "cross" and "default_threshold" not in meta
    kept = tmp_path / "kept.onnx"
    result = runner.invoke(app, ["export", str(weights), "--out", str(kept), "--shifts", "none"])
    assert result.exit_code == 0, result.output
    meta = {p.key: p.value for p in onnx.load(str(kept)).metadata_props}
    assert meta["default_threshold"] == "0.450000"
    bad = runner.invoke(app, ["export", ckpt, "--out", str(out), "--shifts", "diagonal"])
    assert bad.exit_code == 2 and "unknown test-time shift set" in bad.output


def test_a_measured_route_shift_moves_the_default_threshold(
    uninterrupted: Path, tmp_path: Path
) -> None:
    """A clip calibration that measured the route against the same walks' silhouettes
    (``route_shift``) gives clip_threshold = default + shift, not the readings' own threshold."""
    import json

    from typer.testing import CliRunner

    from gaitid.cli import app

    shift = {"shift": -0.0125, "silhouettes_at_fmr": 0.53, "route_at_fmr": 0.5175}
    clips = _calibration(tmp_path, "clips.json", 0.51, route_shift=shift)
    ckpt = uninterrupted / "checkpoints" / "last.pt"
    silhouettes = _calibration(tmp_path, "silhouettes.json", 0.48)
    _, meta = _export_thresholds(ckpt, tmp_path / "m.onnx", silhouettes, clips)
    assert (meta["default_threshold"], meta["clip_threshold"]) == ("0.480000", "0.467500")
    record = json.loads(meta["clip_threshold_calibration"])
    assert record["route_shift"] == shift and record["route_own_threshold"] == 0.51
    assert "default_threshold + route_shift" in record["rule"]
    assert "fnmr_at_threshold" not in record  # that FNMR was at the readings' own threshold
    # the shift needs a default to move: a checkpoint without one is refused, by name
    bad = CliRunner().invoke(
        app,
        [
            "export",
            str(ckpt),
            "--out",
            str(tmp_path / "b.onnx"),
            "--clip-threshold-from",
            str(clips),
        ],
    )
    assert bad.exit_code == 2 and "--threshold-from" in bad.output


def test_every_path_of_the_data_section_is_left_out_of_shipped_weights() -> None:
    """A data setting that names a folder (the dataset, the partition, the clip walks) is a
    path on the training machine: shipped weights must not carry it."""
    from typing import get_args

    from gaitid.model.export import _LOCAL_DATA_KEYS
    from gaitid.training.config import DataConfig

    paths = {
        name
        for name, field in DataConfig.model_fields.items()
        if Path in (field.annotation, *get_args(field.annotation))
    }
    assert paths == {"root", "partition", "clip_walks"}
    assert paths <= set(_LOCAL_DATA_KEYS)
