"""``bench/clip_route.py``: the clip route against clean silhouettes, and the share of the
frames the route loses (the clean probes cut to the frames their clip kept)."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from gaitid.training.clip_walks import MANIFEST_NAME, ClipWalk, read_manifest, walk_camera
from gaitid.training.data.opengait import WalkKey, index_dataset, load_walk
from tests.utils.bench import load_bench


def _clip_walks(root: Path, out: Path, keep: slice) -> Path:
    """``root`` copied as if every walk had come through its clip whole, the manifest naming
    the frames ``keep`` of each as the ones that reached the model."""
    shutil.copytree(root, out)
    with (out / MANIFEST_NAME).open("w") as manifest:
        for key, path in index_dataset(root):
            frames = list(range(load_walk(path).shape[0]))[keep]
            record = ClipWalk(key=str(key), camera={}, seed=0, kept=len(frames))
            record.source_frames = frames
            manifest.write(json.dumps(asdict(record)) + "\n")
    return out


def test_clean_probes_cut_to_every_frame_score_as_clean_ones(
    synthetic_root: Path, exported: Path, tmp_path: Path
) -> None:
    bench = load_bench("clip_route")
    whole = bench.measure(
        exported,
        synthetic_root,
        _clip_walks(synthetic_root, tmp_path / "whole", slice(None)),
        ["003", "004"],
    )
    assert whole["rank1_kept"] == whole["rank1_clean"] == whole["rank1_clip"]
    assert whole["decision_kept"] == whole["decision_clean"]
    assert abs(whole["cosine_mean"] - 1.0) < 1e-5


def test_with_a_cache_the_figures_are_the_same_and_nothing_is_embedded_twice(
    synthetic_root: Path, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gaitid.training.evaluation import extract
    from gaitid.training.evaluation.embedding_cache import EmbeddingCache

    bench = load_bench("clip_route")
    clips = _clip_walks(synthetic_root, tmp_path / "half", slice(0, None, 2))
    plain = bench.measure(exported, synthetic_root, clips, ["003", "004"])
    sizes: list[int] = []
    real = extract.eval_batches

    def counting(walks: Any, batch_size: int, **options: Any) -> Any:
        sizes.append(len(walks))
        return real(walks, batch_size, **options)

    monkeypatch.setattr(extract, "eval_batches", counting)
    cache = EmbeddingCache(tmp_path / "cache")
    first = bench.measure(exported, synthetic_root, clips, ["003", "004"], cache)
    again = bench.measure(exported, synthetic_root, clips, ["003", "004"], cache)
    assert sizes[0] > 0 and sizes[1] == 0
    for figures in (first, again):
        assert figures["rank1_clip"] == plain["rank1_clip"]
        assert figures["decision_kept"] == plain["decision_kept"]
        assert abs(figures["cosine_mean"] - plain["cosine_mean"]) < 1e-6


def test_the_kept_route_embeds_only_the_frames_the_clip_kept(
    synthetic_root: Path, exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = load_bench("clip_route")
    clips = _clip_walks(synthetic_root, tmp_path / "half", slice(0, 4))
    assert all(len(frames) == 4 for frames in bench.kept_frames(clips).values())
    embedded: list[list[tuple[str, int]]] = []
    real = bench.features_from_onnx

    def recording(model: Path, keys: list[Any], walks: list[Any], **options: Any) -> Any:
        embedded.append([(str(k), len(w)) for k, w in zip(keys, walks, strict=True)])
        return real(model, keys, walks, **options)

    monkeypatch.setattr(bench, "features_from_onnx", recording)
    bench.measure(exported, synthetic_root, clips, ["003", "004"])
    (rows,) = embedded  # one pass for every route
    lengths: dict[str, list[int]] = {}
    for key, length in rows:
        lengths.setdefault(key, []).append(length)
    whole = {str(k): len(load_walk(p)) for k, p in index_dataset(synthetic_root)}
    for key, seen in lengths.items():
        if key.split("/")[1] in bench.CASIA_B_GALLERY:
            assert seen == [whole[key]], key  # the gallery whole, embedded once
        else:  # clean and through the clip whole, and cut to the clip's 4 frames
            assert sorted(seen) == sorted([whole[key], whole[key], 4]), key


def test_walks_built_before_the_manifest_named_their_frames_have_no_kept_route(
    synthetic_root: Path, exported: Path, tmp_path: Path
) -> None:
    bench = load_bench("clip_route")
    clips = tmp_path / "old"
    shutil.copytree(synthetic_root, clips)
    (clips / MANIFEST_NAME).write_text("")
    figures = bench.measure(exported, synthetic_root, clips, ["003", "004"])
    assert "rank1_kept" not in figures and "rank1_clip" in figures


def test_walks_whose_camera_is_recorded_also_come_through_as_perfect_masks(
    synthetic_root: Path, exported: Path, tmp_path: Path
) -> None:
    """The truth route: the kept frames drawn by the recorded camera and masked without
    error, embedded beside the other routes and scored like them."""
    bench = load_bench("clip_route")
    clips = _clip_walks(synthetic_root, tmp_path / "cams", slice(None))
    records = read_manifest(clips)
    with (clips / MANIFEST_NAME).open("w") as manifest:
        for record in records:  # the middle third kept: the person in full view there
            camera, _seed = walk_camera(WalkKey(*record.key.split("/")), 0)
            record.camera = asdict(camera)
            third = len(record.source_frames) // 3
            record.source_frames = record.source_frames[third : 2 * third]
            manifest.write(json.dumps(asdict(record)) + "\n")
    truth = bench.truth_walks(synthetic_root, clips, ["003", "004"])
    kept = {k: v for k, v in bench.kept_frames(clips).items() if k[:3] in ("003", "004")}
    assert truth.keys() == kept.keys()
    assert all(walk.shape[0] == len(kept[key]) for key, walk in truth.items())
    figures = bench.measure(exported, synthetic_root, clips, ["003", "004"])
    assert figures["probes_truth"] == figures["probes_kept"]
    assert figures["decision_truth"].keys() == figures["decision_kept"].keys()
