"""Several people in one camera clip: is each identified, and how fast is it?

Identity: real walks of CASIA-B subjects (063-074 by default) are composited in pairs into
640x480 clips (``tests/utils/clips.people_clip``): subject *i* near the camera walking left to
right, subject *i+1* farther away walking right to left, so they cross halfway, each in their
own clothing colour, under sensor noise and mp4 encoding. Each clip goes through
``gaitid.decode.decode_upload_people`` (decoding, ``gaitid.segment`` tracking every person,
the pretreatment: what ``/identify people=all`` runs) and each person's walk is embedded by
the ONNX model and ranked against a gallery of every subject's clean nm-01/090 walk. Printed:
people found per clip, rank-1 per condition through the clip and for the same walks clean,
frames used and frames dropped as overlapping.

Speed: a 10 s 640x480 25 fps clip with three synthetic walkers (two crossing, one farther
away), decode + tracking + pretreatment of everyone, median of ``--repeats``. Usage::

    .venv/bin/python bench/people_clips.py --model models/gaitid-lmgcs.onnx \\
        --data ../shared/data/casia-b-train --out ../runs/bench/people-clips.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.utils.clips, bench.*

from bench.clip_identity import GALLERY, Embedder, network_input
from gaitid.segment import FrontEnd, SegmentationConfig
from tests.utils import clips

#: The walks each pair walks in: NM, BG and CL, as in the CASIA-B protocol's probe sets.
CONDITIONS = {"NM": "nm-05", "BG": "bg-01", "CL": "cl-01"}
#: The near person's view (crossing at an angle) and the far person's.
VIEWS = ("072", "108")
COLOURS = ((200, 70, 60), (60, 80, 200), (90, 170, 70), (190, 160, 60), (150, 80, 170))


def identify_pairs(
    model: Path, data: Path, subjects: list[str], *, seed: int = 0, log: bool = True
) -> dict[str, object]:
    """Every pair of consecutive subjects crossing, in each condition (module docstring)."""
    from gaitid.decode import decode_upload_people
    from gaitid.errors import GaitidError

    embed = Embedder(model)
    walks = {s: np.load(data / f"{s}.npz") for s in subjects}
    names = [s for s in subjects if f"{GALLERY[0]}/{GALLERY[1]}" in walks[s].files]
    gallery = np.stack(
        [embed(network_input(walks[s][f"{GALLERY[0]}/{GALLERY[1]}"])) for s in names]
    )
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for condition, walk in CONDITIONS.items():
        for i, near in enumerate(names):
            far = names[(i + 1) % len(names)]
            keys = [f"{walk}/{VIEWS[0]}", f"{walk}/{VIEWS[1]}"]
            if keys[0] not in walks[near].files or keys[1] not in walks[far].files:
                continue
            frames64 = [walks[near][keys[0]], walks[far][keys[1]]]
            colours = rng.choice(len(COLOURS), 2, replace=False)
            walkers = [
                clips.Walker(
                    clips.walk_masks(frames64[0]),
                    0.08,
                    0.92,
                    person_height=float(rng.uniform(0.5, 0.6)),
                    ground=0.93,
                    colour=COLOURS[colours[0]],
                ),
                clips.Walker(
                    clips.walk_masks(frames64[1]),
                    0.92,
                    0.08,
                    start=int(rng.integers(3, 10)),
                    person_height=float(rng.uniform(0.38, 0.46)),
                    ground=0.8,
                    colour=COLOURS[colours[1]],
                ),
            ]
            length = max(len(w.masks) + w.start for w in walkers)
            clip = clips.people_clip(walkers, length, seed=int(rng.integers(0, 2**31)))
            data_mp4 = clips.encode_mp4(clip.frames)
            row: dict[str, object] = {"condition": condition, "people": [near, far]}
            try:
                found = decode_upload_people(data_mp4, "clip.mp4")
            except GaitidError as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
                rows.append(row)
                continue
            row["found"] = len(found)
            row["tracks"] = []
            for person, truth, clean in zip(found, (near, far), frames64, strict=False):
                vector = embed(person.frames)
                top = names[int(np.argmax(gallery @ vector))]
                clean_top = names[int(np.argmax(gallery @ embed(network_input(clean))))]
                row["tracks"].append(  # type: ignore[attr-defined]
                    {
                        "truth": truth,
                        "top": top,
                        "clean_top": clean_top,
                        "used": person.used,
                        "overlap": dict(person.drops).get("overlap", 0),
                        "cosine_to_clean": float(vector @ embed(network_input(clean))),
                    }
                )
            rows.append(row)
            if log:
                print(f"{condition} {near}+{far}: {_line(row)}", flush=True)
    return {"rows": rows, "threshold": embed.meta.default_threshold}


def _line(row: dict[str, object]) -> str:
    if "error" in row:
        return str(row["error"])
    tracks = row["tracks"]
    assert isinstance(tracks, list)
    return f"{row['found']} people; " + "; ".join(
        f"{t['truth']} -> {t['top']} (clean {t['clean_top']}, {t['used']} frames, "
        f"{t['overlap']} overlap)"
        for t in tracks
    )


def three_people_speed(repeats: int, config: SegmentationConfig | None = None) -> dict[str, object]:
    """Seconds to read every person of a 10 s VGA clip with three walkers (the service's
    segmentation, or ``config``)."""
    from gaitid.decode import decode_upload_people

    walks = [clips.walker_masks(250, seed=s) for s in (1, 2, 3)]
    walkers = [
        clips.Walker(walks[0], 0.05, 0.95, person_height=0.5, ground=0.93, colour=COLOURS[0]),
        clips.Walker(walks[1], 0.95, 0.05, person_height=0.42, ground=0.82, colour=COLOURS[1]),
        clips.Walker(walks[2], 0.2, 0.7, person_height=0.3, ground=0.62, colour=COLOURS[2]),
    ]
    clip = clips.people_clip(walkers, 250)
    data = clips.encode_mp4(clip.frames)
    seconds, people = [], 0
    for _ in range(repeats):
        tick = time.perf_counter()
        found = decode_upload_people(
            data, "clip.mp4", front_end=FrontEnd(config=config or SegmentationConfig())
        )
        seconds.append(time.perf_counter() - tick)
        people = len(found)
    return {
        "clip": "10 s 640x480 25 fps mp4, 3 people",
        "bytes": len(data),
        "people_found": people,
        "seconds": statistics.median(seconds),
        "repeats": repeats,
    }


def example(folder: Path) -> Path:
    """The README's picture: ``gaitid preprocess --people all --preview`` of a composited
    clip of two synthetic walkers crossing (``tests/utils/clips``; no real data in it)."""
    import tempfile

    from typer.testing import CliRunner

    from gaitid.cli import app

    walks = [clips.walker_masks(90, seed=s) for s in (1, 2)]
    walkers = [
        clips.Walker(walks[0], 0.08, 0.92, person_height=0.55, ground=0.93, colour=COLOURS[3]),
        clips.Walker(
            walks[1], 0.92, 0.15, start=6, person_height=0.42, ground=0.8, colour=COLOURS[4]
        ),
    ]
    clip = clips.people_clip(walkers, 96)
    folder.mkdir(parents=True, exist_ok=True)
    strip = folder / "two-people.png"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "two-people.mp4"
        src.write_bytes(clips.encode_mp4(clip.frames))
        args = ["preprocess", str(src), "--people", "all", "--out", str(Path(tmp) / "walks")]
        result = CliRunner().invoke(app, [*args, "--preview", str(strip)])
    print(result.output.replace(str(Path(tmp)), "TMP"))
    if result.exit_code != 0:
        raise SystemExit(result.exit_code)
    from PIL import Image

    Image.open(strip).quantize(256).save(strip, optimize=True)  # a third of the bytes
    return strip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="ONNX model file (not for --example)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/casia-b-train"))
    parser.add_argument("--subjects", default="063-074", help="e.g. 063-074")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON with every clip's figures")
    parser.add_argument(
        "--example", type=Path, help="only write the README's picture into this folder"
    )
    parser.add_argument(
        "--segmentation", default="{}", help="SegmentationConfig fields (JSON) for the speed run"
    )
    parser.add_argument("--speed-only", action="store_true", help="only time the three-person clip")
    args = parser.parse_args(argv)
    if args.example is not None:
        example(args.example)
        return 0
    if args.model is None and not args.speed_only:
        parser.error("--model is required")

    from gaitid.training.data.opengait import parse_subject_spec

    config = SegmentationConfig.model_validate_json(args.segmentation)
    speed = three_people_speed(args.repeats, config)
    print(
        f"speed: {speed['clip']}: {speed['people_found']} people read in "
        f"{speed['seconds']:.2f} s (median of {speed['repeats']}; segmentation "
        f"{config.model_dump(exclude_defaults=True) or 'as served'})",
        flush=True,
    )
    if args.speed_only:
        return 0
    subjects = parse_subject_spec(args.subjects)
    result = identify_pairs(args.model, args.data, subjects, seed=args.seed)
    rows = result["rows"]
    assert isinstance(rows, list)
    print(f"\n# {platform.machine()}, model {args.model.name}, {len(rows)} clips of two people")
    print("| condition | clips | both found | rank-1 through the clip | rank-1 clean | overlap |")
    print("|---|---:|---:|---:|---:|---:|")
    for condition in CONDITIONS:
        mine = [r for r in rows if r["condition"] == condition]
        tracks = [t for r in mine for t in r.get("tracks", [])]
        both = sum(1 for r in mine if r.get("found") == 2)
        clip = 100 * np.mean([t["top"] == t["truth"] for t in tracks]) if tracks else 0.0
        clean = 100 * np.mean([t["clean_top"] == t["truth"] for t in tracks]) if tracks else 0.0
        overlap = np.mean([t["overlap"] for t in tracks]) if tracks else 0.0
        print(f"| {condition} | {len(mine)} | {both} | {clip:.1f} | {clean:.1f} | {overlap:.1f} |")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"speed": speed, **result}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
