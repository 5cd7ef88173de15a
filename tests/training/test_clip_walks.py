"""The clip route as a dataset (`gaitid clip-walks`) and its use as probes (`gaitid eval
--probe-data`): walks come back through composited camera clips in the OpenGait layout, with a
record of every walk; the build resumes; the evaluation takes only its probes from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from typer.testing import CliRunner

from gaitid.cli import app
from gaitid.preprocess import SIDE_CROP
from gaitid.training.clip_walks import MANIFEST_NAME, read_manifest, route_name, walk_camera
from gaitid.training.data.opengait import WalkKey, load_walk, write_walk
from gaitid.training.evaluation.extract import load_route_walks
from tests.utils.synthetic import make_synthetic_dataset

runner = CliRunner()


def _mean_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean silhouette IoU of two equal-length walks, frame by frame, over the network's
    columns (the stored clip frames are padded outside them)."""
    a, b = a[:, :, SIDE_CROP:-SIDE_CROP] > 127, b[:, :, SIDE_CROP:-SIDE_CROP] > 127
    inter = (a & b).sum(axis=(1, 2))
    union = np.maximum((a | b).sum(axis=(1, 2)), 1)
    return float((inter / union).mean())


def test_walks_come_back_through_their_clips_and_a_build_resumes(tmp_path: Path) -> None:
    root = make_synthetic_dataset(
        tmp_path / "data", subjects=2, views=(90,), conditions=("nm-01", "nm-05"), frames=(40, 44)
    )
    out = tmp_path / "clips"
    args = ["clip-walks", str(root), "--out", str(out), "--subjects", "001-002"]
    result = runner.invoke(app, [*args, "--conditions", "nm-05"])
    assert result.exit_code == 0, result.output
    records = read_manifest(out)
    assert sorted(r.key for r in records) == ["001/nm-05/090", "002/nm-05/090"]
    for record in records:
        assert record.error is None, record
        key = WalkKey(*record.key.split("/"))
        clean = load_walk(root / key.relative_dir() / "090.pkl")
        walk = load_walk(out / key.relative_dir() / "090.pkl")
        # crossing 1.3 picture widths: in full view in about half the frames, and every one of
        # those reached the model
        assert record.visible >= 0.4 * len(clean) and not record.dropped_visible, record
        assert walk.shape[0] == record.kept >= record.visible
        # which source frame each kept frame is: in order, and the reading matches its source
        # frame better than the frames half a stride away
        source = np.array(record.source_frames)
        assert len(source) == record.kept and (np.diff(source) > 0).all()
        assert _mean_iou(walk, clean[source]) > _mean_iou(walk, clean[(source + 6) % len(clean)])
        assert record.iou > 0.8
        # the network's 44 columns, padded: nothing outside them
        assert not walk[:, :, :SIDE_CROP].any() and not walk[:, :, -SIDE_CROP:].any()
        assert walk.any()
        # the camera is a function of the seed and the key
        camera, seed = walk_camera(key, 0)
        assert record.camera["view"] == 90 and record.seed == seed
        assert record.camera == json.loads(json.dumps(camera.__dict__))
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["walks"] == 2 and summary["refused"] == 0
    assert summary["working_heights"] == [480]  # the service's segmentation, by default
    # a clip threshold calibrated on these walks names the route's working height
    assert route_name(out) == f"clip walks ({out.name}, segmented at 480 rows)"

    # nothing is redone: a second run writes no line and touches no walk
    walk_file = out / "001" / "nm-05" / "090" / "090.pkl"
    before = walk_file.stat().st_mtime_ns
    again = runner.invoke(app, [*args, "--conditions", "nm-05"])
    assert again.exit_code == 0, again.output
    assert len((out / MANIFEST_NAME).read_text().splitlines()) == 2
    assert walk_file.stat().st_mtime_ns == before
    # a route segmented at another working height never joins this folder
    other = runner.invoke(app, [*args, "--conditions", "nm-01", "--working-height", "240"])
    assert other.exit_code == 2 and "segmented at [480] rows, not 240" in other.output
    assert len((out / MANIFEST_NAME).read_text().splitlines()) == 2


def test_clip_walks_refuses_a_selection_without_walks(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "data", subjects=1, views=(90,), conditions=("nm-01",))
    result = runner.invoke(
        app, ["clip-walks", str(root), "--out", str(tmp_path / "o"), "--subjects", "001"]
    )
    assert result.exit_code == 2
    assert "no walk" in result.output


def test_route_walks_take_the_gallery_from_one_root_and_the_probes_from_the_other(
    tmp_path: Path,
) -> None:
    gallery_root, probe_root = tmp_path / "clean", tmp_path / "clip"
    for subject in ("001", "002"):
        for condition in ("nm-01", "nm-05", "cl-01"):
            write_walk(
                gallery_root, WalkKey(subject, condition, "090"), np.full((5, 64, 64), 1, np.uint8)
            )
        # the clip route gave nm-05 and nm-01 (ignored: gallery walks stay clean), not cl-01
        for condition in ("nm-01", "nm-05"):
            write_walk(
                probe_root, WalkKey(subject, condition, "090"), np.full((3, 64, 64), 2, np.uint8)
            )
    keys, walks = load_route_walks(gallery_root, probe_root, ["001", "002"], ("nm-01",))
    got = {str(k): int(w[0, 0, 0]) for k, w in zip(keys, walks, strict=True)}
    assert got == {
        "001/nm-01/090": 1,
        "001/nm-05/090": 2,
        "002/nm-01/090": 1,
        "002/nm-05/090": 2,
    }  # cl-01 is not replaced by its clean twin
    assert keys == sorted(keys)


def _calibrate_route(model: Path, gallery: Path, probes: Path, *more: str) -> Any:
    """`gaitid eval --protocol open-set` of subjects 001-004 with the probes from ``probes``."""
    args = ["--data", str(gallery), "--probe-data", str(probes), "--subjects", "001-004"]
    return runner.invoke(app, ["eval", str(model), *args, "--protocol", "open-set", *more])


def test_eval_calibrates_on_probes_of_another_route(
    exported: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    probes = tmp_path / "clip-walks"
    shutil.copytree(synthetic_root, probes)
    result = _calibrate_route(exported, synthetic_root, probes, "--out", str(tmp_path / "cal"))
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert record["probes"] == "clip walks (clip-walks)"
    from gaitid.training.evaluation.open_set import read_threshold

    threshold, provenance = read_threshold(tmp_path / "cal" / "calibration.json")
    assert provenance["probes"] == "clip walks (clip-walks)" and -1 <= threshold <= 1
    # the probes' clean twins are the same walks here: the route moves nothing
    shift = record["route_shift"]
    assert shift["shift"] == 0.0 and shift["route_at_fmr"] == shift["silhouettes_at_fmr"]
    assert shift["probe_walks"] > 0 and provenance["route_shift"] == shift
    assert "the route moves it by **+0.0000**" in result.output


def test_eval_refuses_route_probes_without_clean_twins(
    exported: Path, synthetic_root: Path, tmp_path: Path
) -> None:
    """The route's shift is measured against the same walks' silhouettes: a probe walk that
    --data lacks is named, not silently left out."""
    probes = tmp_path / "clip-walks"
    shutil.copytree(synthetic_root, probes)
    gallery = tmp_path / "gallery"
    shutil.copytree(synthetic_root, gallery)
    lost = next(p for p in sorted((gallery / "001").iterdir()) if p.name.startswith("cl-"))
    shutil.rmtree(lost)
    result = _calibrate_route(exported, gallery, probes)
    assert result.exit_code != 0 and "no clean silhouettes" in result.output, result.output


def test_the_truth_route_gives_the_kept_frames_as_perfect_masks(tmp_path: Path) -> None:
    """``read_truth``: the frames a clip kept, drawn by the same camera but masked without
    error; each matches its own source frame (the composite's resampling only), and the
    truth it starts from is the clip's own."""
    from gaitid.training.clip_walks import read_truth
    from gaitid.training.synth import camera as cam

    root = make_synthetic_dataset(
        tmp_path / "data", subjects=1, views=(90,), conditions=("nm-05",), frames=(40, 44)
    )
    clean = load_walk(root / "001" / "nm-05" / "090" / "090.pkl")
    camera, seed = walk_camera(WalkKey("001", "nm-05", "090"), 0)
    masks = cam.walk_masks(clean)
    clip = cam.camera_clip(masks, camera, seed=seed)
    for t in (0, len(masks) // 2, len(masks) - 1):
        assert np.array_equal(cam.truth_mask(masks, camera, t), clip.truth[t])
    shown = cam.walk_frames_shown(clean)
    source = shown[10:30:2]
    frames = read_truth(clean, camera, source)
    assert frames.shape == (len(source), 64, 44)
    padded = np.pad(frames, ((0, 0), (0, 0), (SIDE_CROP, SIDE_CROP)))
    own = _mean_iou(padded, clean[source])
    assert own > 0.8
    assert own > _mean_iou(padded, clean[[(s + 6) % len(clean) for s in source]])
