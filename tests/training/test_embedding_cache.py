"""The embedding cache of the shipping recipe: each walk embedded once per network."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gaitid.cli import app
from gaitid.training.evaluation import extract
from gaitid.training.evaluation.embedding_cache import EmbeddingCache, model_digest, walk_digest
from gaitid.training.evaluation.extract import features_from_onnx, load_eval_walks
from tests.utils.onnx_models import with_metadata


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many walks each embedding run sends through the network."""
    sizes: list[int] = []
    real = extract.eval_batches

    def spy(walks, batch_size, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(walks))
        return real(walks, batch_size, **kwargs)

    monkeypatch.setattr(extract, "eval_batches", spy)
    return sizes


def test_a_walk_is_known_by_its_pixels_alone() -> None:
    rng = np.random.default_rng(0)
    walk = (rng.random((9, 64, 44)) < 0.3).astype(np.uint8) * 255
    assert walk_digest(walk) == walk_digest(walk.copy())
    assert walk_digest(walk) == walk_digest(np.asfortranarray(walk))  # memory layout: no
    changed = walk.copy()
    changed[4, 30, 20] ^= 255
    assert walk_digest(changed) != walk_digest(walk)
    assert walk_digest(walk[:8]) != walk_digest(walk)
    assert walk_digest(walk.reshape(9, 44, 64)) != walk_digest(walk)  # same bytes, other shape


def test_a_network_is_known_by_its_weights_not_its_metadata(exported: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    relabelled = with_metadata(exported, tmp_path / "relabelled.onnx", default_threshold="0.5")
    assert relabelled.read_bytes() != exported.read_bytes()
    assert model_digest(relabelled) == model_digest(exported)
    model = onnx.load(str(exported))
    weight = next(w for w in model.graph.initializer if w.data_type == onnx.TensorProto.FLOAT)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) + 0.01, weight.name))
    onnx.save(model, str(tmp_path / "retrained.onnx"))
    assert model_digest(tmp_path / "retrained.onnx") != model_digest(exported)


def test_cached_walks_are_not_embedded_again(
    exported: Path, synthetic_root: Path, tmp_path: Path, counted: list[int]
) -> None:
    keys, walks = load_eval_walks(synthetic_root)
    cache = EmbeddingCache(tmp_path / "cache")
    plain = features_from_onnx(exported, keys, walks)
    first = features_from_onnx(exported, keys[:10], walks[:10], cache=cache)
    again = features_from_onnx(exported, keys, walks, cache=cache, batch_size=1)
    assert counted == [len(walks), 10, len(walks) - 10]  # only the walks not yet kept
    np.testing.assert_allclose(first.embeddings, plain.embeddings[:10], atol=1e-6)
    np.testing.assert_allclose(again.embeddings, plain.embeddings, atol=1e-6)
    assert again.subjects.tolist() == plain.subjects.tolist()
    # a relabelled copy of the same network, with walks repeated: nothing to embed
    relabelled = with_metadata(exported, tmp_path / "copy.onnx", default_threshold="0.5")
    repeated = features_from_onnx(relabelled, [*keys, keys[0]], [*walks, walks[0]], cache=cache)
    assert counted[-1] == 0
    np.testing.assert_allclose(repeated.embeddings[-1], plain.embeddings[0], atol=1e-6)


def test_a_damaged_cache_file_is_embedded_again_and_replaced(
    exported: Path, synthetic_root: Path, tmp_path: Path, counted: list[int]
) -> None:
    keys, walks = load_eval_walks(synthetic_root, ["001"])
    cache = EmbeddingCache(tmp_path / "cache")
    features_from_onnx(exported, keys, walks, cache=cache)
    (entry,) = (tmp_path / "cache").glob("*.npz")
    assert entry.name == f"{model_digest(exported)}.npz"
    np.save(tmp_path / "plain.npy", np.zeros(3))
    for damage in (b"not a zip", b"", (tmp_path / "plain.npy").read_bytes()):
        entry.write_bytes(damage)
        features_from_onnx(exported, keys, walks, cache=cache)
        assert counted[-1] == len(walks)
    np.savez(entry, digests=np.array(["x"]), embeddings=np.full((1, 256), np.nan, np.float32))
    features_from_onnx(exported, keys, walks, cache=cache)
    assert counted[-1] == len(walks)
    features_from_onnx(exported, keys, walks, cache=cache)
    assert counted[-1] == 0  # replaced by a good one
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [entry.name]  # no temp left


def test_eval_and_quantize_share_the_cache(
    exported: Path,
    uninterrupted: Path,
    synthetic_root: Path,
    tmp_path: Path,
    counted: list[int],
) -> None:
    runner = CliRunner()
    cache = str(tmp_path / "cache")
    common = ["--data", str(synthetic_root), "--subjects", "001-004", "--cache", cache]
    result = runner.invoke(
        app,
        ["eval", str(exported), *common, "--calibrate", "--out", str(tmp_path / "fp32")],
    )
    assert result.exit_code == 0, result.output
    threshold = json.loads((tmp_path / "fp32" / "calibration.json").read_text())["threshold"]
    # what `gaitid export --threshold-from` does: new metadata, the same network
    calibrated = with_metadata(
        exported, tmp_path / "calibrated.onnx", default_threshold=f"{threshold:.6f}"
    )
    walks = counted[0]
    int8 = tmp_path / "int8.onnx"
    result = runner.invoke(
        app,
        [
            "quantize", str(calibrated), "--out", str(int8), "--data", str(synthetic_root),
            "--subjects", "001-002", "--walks", "4", "--method", "minmax",
            "--threshold-subjects", "001-004", "--cache", cache,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert counted[1:] == [0, walks]  # fp32: every walk kept by eval; int8: every walk new
    result = runner.invoke(app, ["eval", str(int8), *common])
    assert result.exit_code == 0, result.output
    assert counted[-1] == 0  # the int8 file's walks were kept by quantize
    checkpoint = uninterrupted / "checkpoints" / "last.pt"
    result = runner.invoke(app, ["eval", str(checkpoint), *common])
    assert result.exit_code == 2 and "--cache" in result.output


def test_a_run_cut_off_keeps_what_it_embedded(
    exported: Path, synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, walks = load_eval_walks(synthetic_root)
    real = extract.eval_batches

    def one_batch_then_killed(walks, batch_size, **kwargs):  # type: ignore[no-untyped-def]
        batches = real(walks, batch_size, **kwargs)
        yield next(batches)
        raise KeyboardInterrupt  # the session's end

    monkeypatch.setattr(extract, "_CACHE_SAVE_EVERY_S", 0.0)
    monkeypatch.setattr(extract, "eval_batches", one_batch_then_killed)
    cache = EmbeddingCache(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        features_from_onnx(exported, keys, walks, cache=cache, batch_size=4)
    assert len(cache.load(model_digest(exported))) == 4
