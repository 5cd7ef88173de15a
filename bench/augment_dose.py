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
    # resolution near CASIA-B's own, no mask-style error: per-frame shift and scale only
    "jitter-only": {
        "min_height": 240,
        "max_height": 256,
        "morph_px": 0,
        "blur_sigma": 0.0,
        "edge_noise": 0.0,
        "holes": 0.0,
        "shadow": 0.0,
        "shift_px": 1.0,
        "scale": 0.03,
    },
    # the mask re-made near full resolution, blurred and re-thresholded: smoother edges only
    "smooth-only": {
        "min_height": 240,
        "max_height": 256,
        "morph_px": 0,
        "blur_sigma": 2.5,
        "edge_noise": 0.0,
        "holes": 0.0,
        "shadow": 0.0,
        "shift_px": 0.0,
        "scale": 0.0,
    },
}

app = typer.Typer(add_completion=False)


def _cosines(a: NDArray[np.float32], b: NDArray[np.float32]) -> dict[str, float]:
    values = np.sum(a * b, axis=1)
    return {"mean": float(values.mean()), "p10": float(np.percentile(values, 10))}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _frames_lost(
    walks: list[NDArray[np.uint8]],
    readings: list[NDArray[np.uint8]],
    clean: NDArray[np.float32],
    read: NDArray[np.float32],
) -> dict[str, Any]:
    """How many frames the clip route kept, and the cosine of the walks it kept whole against
    those it shortened (frames where the person is not fully in the picture are dropped): the
    share of the clip route's hit that is lost frames rather than different masks."""
    lost = np.array([len(w) - len(r) for w, r in zip(walks, readings, strict=True)])
    cosines = np.sum(clean * read, axis=1)
    whole = lost == 0
    return {
        "clean_mean": float(np.mean([len(w) for w in walks])),
        "clip_mean": float(np.mean([len(r) for r in readings])),
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
        clean = features_from_file(model, keys, walks)[0].embeddings
        through_clip = features_from_file(model, keys, clip_frames)[0].embeddings
    except (GaitidError, typer.BadParameter) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    results: dict[str, Any] = {"clip route": _cosines(clean, through_clip)}
    results["clip route"]["frames"] = _frames_lost(walks, clip_frames, clean, through_clip)
    print(f"# {platform.machine()}, {model.name}, {len(keys)} walks ({subjects})", flush=True)
    for name, settings in doses.items():
        augment = AugmentConfig(probability=1.0, **settings)
        rng = np.random.default_rng(seed)
        degraded = [degrade_walk(walk, augment, rng) for walk in walks]
        results[name] = {
            **_cosines(clean, features_from_file(model, keys, degraded)[0].embeddings),
            "augment": augment.model_dump(),
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
