"""How hard a training degradation hits a model's embedding, next to the clip route's own hit.

A degradation meant to make a model robust to how silhouettes were segmented
(``training/augment.py``) should be about as hard as the segmentation the service really
applies, not much harder: a model trained on far harsher noise than it will meet spends its
capacity on that (issue 25's robust recipe lost clean rank-1). This measures both with one
yardstick, the cosine between a walk's embedding and its clean self's:

- **the clip route**: held-out walks read through composited camera clips by the service's
  own decoding and segmentation (``gaitid clip-walks``), against the same walks' CASIA-B
  silhouettes;
- **each dose**: the same clean walks degraded by ``degrade_walk`` under an ``AugmentConfig``
  (built-in doses below, or the ``data.augment`` of training configs).

Only walks the clip route read are used (refused clips, the frontal views, are left out), and
every frame of each, as evaluation does. Usage::

    .venv/bin/python bench/augment_dose.py models/gaitid-lmgcs.pt --data data/casia-b \\
        --clip-walks ../runs/clip-walks/063-074 --config configs/casia-b-lite-clip-jitter.yaml
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from numpy.typing import NDArray

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from gaitid.training.augment import AugmentConfig, degrade_walk  # noqa: E402

#: A mask re-made near CASIA-B's own resolution with no segmenter error of any kind; the
#: single-cause doses below add one back to it.
_NOTHING_ELSE: dict[str, Any] = {
    "min_height": 240,
    "max_height": 256,
    "morph_px": 0,
    "blur_sigma": 0.0,
    "edge_noise": 0.0,
    "holes": 0.0,
    "shadow": 0.0,
    "shift_px": 0.0,
    "scale": 0.0,
}

#: Named doses: the module's defaults, and lighter ones down to alignment jitter alone.
DOSES: dict[str, dict[str, Any]] = {
    "default": {},
    "mild": {
        "min_height": 100,
        "max_height": 200,
        "morph_px": 1,
        "blur_sigma": 1.0,
        "edge_noise": 0.1,
        "holes": 0.05,
        "shadow": 0.1,
        "shift_px": 1.0,
        "scale": 0.03,
    },
    # per-frame shift and scale only
    "jitter-only": {**_NOTHING_ELSE, "shift_px": 1.0, "scale": 0.03},
    # blurred and re-thresholded: smoother edges only
    "smooth-only": {**_NOTHING_ELSE, "blur_sigma": 2.5},
}

app = typer.Typer(add_completion=False)


def _cosines(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """Row-wise cosine of unit vectors (the service's embeddings are L2-normalised)."""
    return np.sum(a * b, axis=1)


def _summary(cosines: NDArray[np.float32]) -> dict[str, float]:
    return {"mean": float(cosines.mean()), "p10": float(np.percentile(cosines, 10))}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _frames_lost(
    walks: list[NDArray[np.uint8]],
    readings: list[NDArray[np.uint8]],
    cosines: NDArray[np.float32],
) -> dict[str, Any]:
    """How many frames the clip route kept, and the cosine of the walks it kept whole against
    those it shortened (frames where the person is not fully in the picture are dropped): the
    share of the clip route's hit that is lost frames rather than different masks."""
    clean_frames = np.array([len(w) for w in walks])
    clip_frames = np.array([len(r) for r in readings])
    whole = clean_frames == clip_frames
    return {
        "clean_mean": float(clean_frames.mean()),
        "clip_mean": float(clip_frames.mean()),
        "whole_walks": int(whole.sum()),
        "whole_cosine": float(cosines[whole].mean()) if whole.any() else None,
        "shortened_walks": int((~whole).sum()),
        "shortened_cosine": float(cosines[~whole].mean()) if (~whole).any() else None,
    }


def _config_dose(path: Path) -> tuple[str, dict[str, Any]]:
    """A training config's ``data.augment`` as a dose named after its file (the share of walks
    it degrades is left out: here every walk is degraded, to measure the dose itself)."""
    from gaitid.training.config import load_config

    augment = load_config(path).data.augment
    return path.stem, augment.model_dump(exclude={"probability"})


@app.command()
def main(
    model: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help=".pt or .onnx")],
    data: Annotated[Path, typer.Option(exists=True, file_okay=False)],
    clip_walks: Annotated[Path, typer.Option(exists=True, file_okay=False)],
    subjects: Annotated[str, typer.Option()] = "063-074",
    dose: Annotated[list[str] | None, typer.Option(help=f"built-in: {', '.join(DOSES)}")] = None,
    config: Annotated[
        list[Path] | None, typer.Option(exists=True, help="training configs' data.augment")
    ] = None,
    seed: Annotated[int, typer.Option()] = 1,
    out: Annotated[Path | None, typer.Option(help="JSON with every figure")] = None,
) -> None:
    from gaitid.errors import GaitidError
    from gaitid.training.data.opengait import parse_subject_spec
    from gaitid.training.evaluation.extract import features_from_file, load_eval_walks

    unknown = sorted(set(dose or []) - set(DOSES))
    if unknown:
        typer.echo(f"error: unknown dose {unknown}; built-in: {', '.join(DOSES)}", err=True)
        raise typer.Exit(2)
    try:
        chosen = parse_subject_spec(subjects)
        clip_keys, clip_frames = load_eval_walks(clip_walks, chosen)
        read = set(clip_keys)
        keys, walks = load_eval_walks(data, chosen, lambda key: key in read)
        if keys != clip_keys:
            missing = ", ".join(
                f"{k.subject}/{k.condition}/{k.view}" for k in sorted(read - set(keys))
            )
            raise typer.BadParameter(f"{clip_walks} holds walks that {data} lacks: {missing}")
        doses = {name: DOSES[name] for name in dose or list(DOSES)}
        doses.update(_config_dose(path) for path in config or [])
        started = time.perf_counter()
        print(f"# {platform.machine()}, {model.name}, {len(keys)} walks ({subjects})", flush=True)
        augments = {
            name: AugmentConfig(probability=1.0, **settings) for name, settings in doses.items()
        }
        degraded = {}
        for name, augment in augments.items():
            rng = np.random.default_rng(seed)
            degraded[name] = [degrade_walk(walk, augment, rng) for walk in walks]
        # one pass over every reading of the walks: the model is loaded once
        readings = [walks, clip_frames, *degraded.values()]
        every = [frames for reading in readings for frames in reading]
        embeddings = features_from_file(model, keys * len(readings), every)[0].embeddings
    except (GaitidError, typer.BadParameter) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    clean, clip_read, *degraded_read = np.split(embeddings, len(readings))
    through_clip = _cosines(clean, clip_read)
    results: dict[str, Any] = {
        "clip route": {
            **_summary(through_clip),
            "frames": _frames_lost(walks, clip_frames, through_clip),
        }
    }
    for name, embedded in zip(degraded, degraded_read, strict=True):
        results[name] = {
            **_summary(_cosines(clean, embedded)),
            "augment": augments[name].model_dump(),
        }
    print("\n| walks | cosine to clean, mean | p10 |\n|---|---:|---:|")
    for name, figures in results.items():
        print(f"| {name} | {figures['mean']:.3f} | {figures['p10']:.3f} |")
    frames = results["clip route"]["frames"]
    print(
        f"\nclip route: {frames['clip_mean']:.1f} frames a walk against {frames['clean_mean']:.1f}"
        f" clean; cosine {_fmt(frames['whole_cosine'])} over the {frames['whole_walks']} walks"
        f" it kept whole, {_fmt(frames['shortened_cosine'])} over the"
        f" {frames['shortened_walks']} it shortened"
    )
    print(f"\n# {time.perf_counter() - started:.0f} s")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": model.name, "walks": len(keys), **results}, indent=2))


if __name__ == "__main__":
    app()
