"""``gaitid preprocess`` through typer's CliRunner, and the torch-free import promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import typer
from PIL import Image
from typer.testing import CliRunner

from gaitid import commands
from gaitid.decode import decode_upload
from tests.utils import uploads

runner = CliRunner()


def _app() -> typer.Typer:
    """The core commands on their own root, registered exactly as ``gaitid.cli`` does."""
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root."""

    commands.register(app)
    return app


def test_preprocess_writes_the_network_input(tmp_path: Path) -> None:
    masks = uploads.walking_masks(5, 90, 120, seed=21)
    masks[2] = 0  # one blank frame is dropped and reported
    src = tmp_path / "walk.zip"
    src.write_bytes(uploads.encode_zip(masks))
    out = tmp_path / "out" / "walk.npy"
    result = runner.invoke(_app(), ["preprocess", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "total=5 used=4 dropped=1" in result.output
    saved = np.load(out, allow_pickle=False)
    assert saved.dtype == np.uint8 and saved.shape == (4, 64, 44)
    assert np.array_equal(saved, decode_upload(src.read_bytes()).frames)


def test_preprocess_reads_a_folder_of_frames(tmp_path: Path) -> None:
    masks = uploads.walking_masks(3, 90, 120, seed=22)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(masks):
        Image.fromarray(frame).save(folder / f"img{i}.png")
    out = tmp_path / "walk.npy"
    result = runner.invoke(_app(), ["preprocess", str(folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert np.array_equal(np.load(out), decode_upload(uploads.encode_npy(masks)).frames)


def test_bad_upload_exits_2_with_the_reason(tmp_path: Path) -> None:
    src = tmp_path / "walk.npy"
    src.write_bytes(uploads.encode_npy(np.full((2, 8, 8), np.nan)))
    out = tmp_path / "out.npy"
    result = runner.invoke(_app(), ["preprocess", str(src), "--out", str(out)])
    assert result.exit_code == 2
    assert "NaN" in result.output
    assert not out.exists()


def test_too_few_frames_exits_2(tmp_path: Path) -> None:
    src = tmp_path / "walk.npy"
    src.write_bytes(uploads.encode_npy(uploads.walking_masks(2)))
    out = tmp_path / "out.npy"
    args = ["preprocess", str(src), "--out", str(out), "--min-frames", "3"]
    result = runner.invoke(_app(), args)
    assert result.exit_code == 2
    assert "at least 3" in result.output


def test_out_must_be_npy_and_src_must_exist(tmp_path: Path) -> None:
    src = tmp_path / "walk.npy"
    src.write_bytes(uploads.encode_npy(uploads.walking_masks(2)))
    wrong = runner.invoke(_app(), ["preprocess", str(src), "--out", str(tmp_path / "x.txt")])
    assert wrong.exit_code == 2 and ".npy" in wrong.output
    missing = runner.invoke(_app(), ["preprocess", str(tmp_path / "nope"), "--out", "x.npy"])
    assert missing.exit_code == 2


def test_preprocess_a_camera_clip_with_a_preview(tmp_path: Path) -> None:
    from tests.utils import clips

    clip = clips.crossing_clip(seed=4, towards_camera=True)
    src = tmp_path / "clip.mp4"
    src.write_bytes(clips.encode_mp4(clip.frames))
    scene = tmp_path / "scene.png"
    Image.fromarray(clip.empty_scene).save(scene)
    out, strip = tmp_path / "walk.npy", tmp_path / "strip.png"
    refused = runner.invoke(_app(), ["preprocess", str(src), "--out", str(out)])
    assert refused.exit_code == 2 and "empty-scene frame" in refused.output
    args = ["preprocess", str(src), "--out", str(out), "--background", str(scene)]
    result = runner.invoke(_app(), [*args, "--preview", str(strip)])
    assert result.exit_code == 0, result.output
    assert "input: video" in result.output and "used=60" in result.output
    picture = np.asarray(Image.open(strip))
    assert picture.shape[0] == 3 * 128 and picture.shape[2] == 3  # frames, masks, silhouettes
    assert np.load(out).shape == (60, 64, 44)
    wrong = runner.invoke(_app(), ["preprocess", str(src), "--out", str(out), "--input", "x"])
    assert wrong.exit_code == 2 and "--input" in wrong.output


def test_preprocess_every_person_of_a_clip(tmp_path: Path) -> None:
    from tests.utils import clips

    near, far = clips.walker_masks(70, seed=1), clips.walker_masks(60, seed=2)
    walkers = [
        clips.Walker(near, 0.1, 0.9, person_height=0.5, ground=0.92, colour=(200, 70, 60)),
        clips.Walker(far, 0.9, 0.2, start=5, person_height=0.4, ground=0.8, colour=(60, 80, 200)),
    ]
    clip = clips.people_clip(walkers, 75, height=240, width=320)
    src, out, strip = tmp_path / "two.mp4", tmp_path / "people", tmp_path / "strip.png"
    src.write_bytes(clips.encode_mp4(clip.frames))
    args = ["preprocess", str(src), "--people", "all", "--out", str(out)]
    result = runner.invoke(_app(), [*args, "--preview", str(strip)])
    assert result.exit_code == 0, result.output
    assert "people: 2" in result.output and "overlap=" in result.output
    assert "track 1: frames 0-" in result.output and "track 2: frames 5-" in result.output
    walks = [np.load(out / f"track-{n}.npy") for n in (1, 2)]
    assert all(w.shape[1:] == (64, 44) and w.shape[0] >= 30 for w in walks)
    picture = np.asarray(Image.open(strip))
    assert picture.shape[0] == 3 * 128  # the clip with both tinted, then one row each
    one = runner.invoke(_app(), ["preprocess", str(src), "--track", "2", "-o", str(out / "2.npy")])
    assert one.exit_code == 0, one.output
    assert np.array_equal(np.load(out / "2.npy"), walks[1])
    both = runner.invoke(_app(), [*args, "--track", "1"])
    assert both.exit_code == 2 and "--track" in both.output


def test_core_modules_never_import_torch() -> None:
    code = (
        "import sys, gaitid.commands, gaitid.decode, gaitid.preprocess, gaitid.errors, "
        "gaitid.segment, gaitid.preview; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
