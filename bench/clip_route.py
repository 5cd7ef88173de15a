"""The clip route under the full CASIA-B protocol, for people a model never saw.

``gaitid clip-walks`` re-reads held-out walks through composited camera clips (the service's
decoding, segmentation and pretreatment). Here each ONNX model embeds those walks as probes
and, separately, the *same* walks' clean silhouettes, against one clean gallery (nm-01..04,
all views: 44 templates a person), and prints per condition:

- rank-1 (CASIA-B protocol, identical views excluded) clean and through clips, and the loss;
- genuine acceptance (1 - FNMR, identity regime: a probe against its own 44 templates) and
  impostor passes (FMR) at the model's threshold, for clean probes and for clip probes, and
  for clip probes at the model's ``clip_threshold`` when it has one;
- the cosine between the two routes' embeddings of the same walk;
- the same figures for the clean probes cut to the frames their clip kept (route ``kept``,
  when the manifest records them): what the clip route costs by losing frames alone, the rest
  of its loss being the masks;
- and for those frames as a flawless segmenter would mask them (route ``truth``, when the
  manifest also records the camera: ``gaitid.training.clip_walks.read_truth``): the masks'
  share splits into the composite's resampling (clean -> truth, beyond the frames) and the
  segmentation (truth -> clip).

Walks whose clip was refused (``clip-walks.jsonl`` says why) are not probes of either route
and are counted separately. Usage::

    .venv/bin/gaitid clip-walks data/casia-b --out ../runs/clip-walks/063-074 \\
        --subjects 063-074 --conditions nm-05,bg-01,cl-01 --jobs 2
    .venv/bin/python bench/clip_route.py --models models/gaitid-lmgcs.onnx \\
        --clip-walks ../runs/clip-walks/063-074 --out ../runs/bench/clip-route.json

With ``--cache DIR`` (the directory of ``gaitid eval --cache``) the gallery and the walks the
shipping recipe's evaluations and clip calibration already embedded with a file are not
embedded again: what is left is the kept and perfect-mask routes.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from gaitid.training.clip_walks import read_manifest, read_truth, summarize
from gaitid.training.data.opengait import load_dataset, parse_subject_spec
from gaitid.training.evaluation.embedding_cache import EmbeddingCache
from gaitid.training.evaluation.extract import features_from_onnx, load_eval_walks
from gaitid.training.evaluation.open_set import fmr_fnmr, verification_scores
from gaitid.training.evaluation.protocols import (
    CASIA_B,
    CASIA_B_GALLERY,
    CASIA_B_PROBES,
    evaluate_cross_view,
)
from gaitid.training.synth.camera import Camera


def _thresholds(model: Path) -> tuple[float, float | None]:
    import onnxruntime as ort

    from gaitid.contract import read_metadata

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    meta = read_metadata(session.get_modelmeta().custom_metadata_map)
    return float(meta.default_threshold or 0.5), meta.clip_threshold


def kept_frames(clip_walks: Path) -> dict[str, list[int]]:
    """Each clip walk's source frames that reached the model (walks built before the manifest
    recorded them, or whose order was lost, are left out)."""
    return {r.key: r.source_frames for r in read_manifest(clip_walks) if r.source_frames}


def truth_walks(data: Path, clip_walks: Path, subjects: list[str]) -> dict[str, np.ndarray]:
    """Each clip walk's kept frames as perfect masks through the same camera (walks whose
    record names no camera or no frames, and those left with no frame, are left out)."""
    records = {r.key: r for r in read_manifest(clip_walks) if r.source_frames and r.camera}
    raw = load_dataset(data, subjects, lambda key: str(key) in records)
    truth = {
        str(key): read_truth(
            frames, Camera(**records[str(key)].camera), records[str(key)].source_frames
        )
        for key, frames in raw.items()
    }
    return {key: walk for key, walk in truth.items() if len(walk)}


def measure(
    model: Path,
    data: Path,
    clip_walks: Path,
    subjects: list[str],
    cache: EmbeddingCache | None = None,
) -> dict[str, Any]:
    """Both routes of every probe walk the clip route read, under one model (the walks a
    ``cache`` holds for it are not embedded again)."""
    clip_keys, clip_read = load_eval_walks(
        clip_walks, subjects, lambda key: key.condition not in CASIA_B_GALLERY
    )
    probe_keys = set(clip_keys)
    all_keys, all_walks = load_eval_walks(data, subjects)
    pairs = list(zip(all_keys, all_walks, strict=True))
    gallery = [(k, w) for k, w in pairs if k.condition in CASIA_B_GALLERY]
    clean = [(k, w) for k, w in pairs if k in probe_keys]
    probes = {
        "clean": clean,
        "clip": list(zip(clip_keys, clip_read, strict=True)),
    }
    kept = kept_frames(clip_walks)
    if kept:  # the clean probes cut to the frames their clip kept: the frames' share of the loss
        probes["kept"] = [(k, w[kept[str(k)]]) for k, w in clean if str(k) in kept]
    truth = truth_walks(data, clip_walks, subjects)
    if truth:  # and as perfect masks: the resampling's share, the rest is the segmentation
        probes["truth"] = [(k, truth[str(k)]) for k, _w in clean if str(k) in truth]
    # one pass: the gallery is embedded once for every route, the model loaded once
    rows = [*gallery, *(pair for route in probes.values() for pair in route)]
    every = features_from_onnx(model, [k for k, _ in rows], [w for _, w in rows], cache=cache)
    route_of = np.array(
        ["gallery"] * len(gallery) + [name for name, route in probes.items() for _ in route]
    )
    routes = {name: every.subset((route_of == "gallery") | (route_of == name)) for name in probes}
    threshold, clip_threshold = _thresholds(model)
    out: dict[str, Any] = {"model": model.name, "threshold": threshold}
    out["clip_threshold"] = clip_threshold
    for route, features in routes.items():
        ranks = evaluate_cross_view(features, CASIA_B, "embedding")
        out[f"rank1_{route}"] = dict(ranks.mean)
        out[f"probes_{route}"] = dict(ranks.num_probes)
        per_condition: dict[str, dict[str, float]] = {}
        for probe_set, conditions in CASIA_B_PROBES.items():
            if not np.isin(features.conditions, conditions).any():
                continue
            rows = np.isin(features.conditions, (*CASIA_B_GALLERY, *conditions))
            sets = verification_scores(features.subset(rows))["identity"]
            figures = {}
            applied = {"threshold": threshold}
            if route == "clip" and clip_threshold is not None:
                applied["clip_threshold"] = clip_threshold
            for name, value in applied.items():
                fmr, fnmr = fmr_fnmr(sets, value)
                figures[f"accept_at_{name}"] = 100.0 * (1 - fnmr)
                figures[f"impostor_at_{name}"] = 100.0 * fmr
            per_condition[probe_set] = figures
        out[f"decision_{route}"] = per_condition
    clean, clip = routes["clean"], routes["clip"]
    index = {
        (s, c, v): i
        for i, (s, c, v) in enumerate(
            zip(
                clean.subjects.tolist(),
                clean.conditions.tolist(),
                clean.views.tolist(),
                strict=True,
            )
        )
    }
    cosines = [
        float(clean.embeddings[index[(s, c, v)]] @ clip.embeddings[i])
        for i, (s, c, v) in enumerate(
            zip(clip.subjects.tolist(), clip.conditions.tolist(), clip.views.tolist(), strict=True)
        )
        if c not in CASIA_B_GALLERY
    ]
    out["cosine_mean"], out["cosine_p10"] = (
        float(np.mean(cosines)),
        float(np.percentile(cosines, 10)),
    )
    return out


def _row(values: list[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


def _route_row(r: dict[str, Any], route: str, clean: list[float], sets: list[str]) -> str:
    """One model's rank-1, loss against clean and acceptance on one of the extra routes."""
    ranks = [r[f"rank1_{route}"][s] for s in sets]
    accepted = " / ".join(f"{r[f'decision_{route}'][s]['accept_at_threshold']:.1f}" for s in sets)
    return (
        f"| {r['model']} | {_row(ranks)} | {float(np.mean(clean) - np.mean(ranks)):.1f} "
        f"| {accepted} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="ONNX models")
    parser.add_argument("--data", type=Path, default=Path("data/casia-b"))
    parser.add_argument("--clip-walks", type=Path, required=True, help="gaitid clip-walks output")
    parser.add_argument("--subjects", default="063-074")
    parser.add_argument("--out", type=Path, help="JSON with every figure")
    parser.add_argument(
        "--cache", type=Path, help="embedding cache shared with `gaitid eval --cache`"
    )
    args = parser.parse_args(argv)
    subjects = parse_subject_spec(args.subjects)
    records = [r for r in read_manifest(args.clip_walks) if r.key.split("/")[0] in subjects]
    summary = summarize(records)
    refused_views = Counter(r.key.split("/")[2] for r in records if r.error)
    print(f"# {platform.machine()}, clip walks {args.clip_walks.name}: {json.dumps(summary)}")
    print(f"refused by view: {dict(sorted(refused_views.items()))}")
    cache = None if args.cache is None else EmbeddingCache(args.cache)
    results = [measure(m, args.data, args.clip_walks, subjects, cache) for m in args.models]
    print(
        "\n| model | rank-1 clean NM / BG / CL | rank-1 clip NM / BG / CL | loss (mean) "
        "| accepted clean / clip at threshold | clip at clip_threshold "
        "| impostors clean / clip | cosine mean (p10) |"
    )
    print("|---|---|---|---:|---|---|---|---:|")
    kept_rows = []
    truth_rows = []
    for r in results:
        sets = [s for s in CASIA_B_PROBES if s in r["rank1_clip"]]
        clean = [r["rank1_clean"][s] for s in sets]
        clip = [r["rank1_clip"][s] for s in sets]
        loss = float(np.mean(clean) - np.mean(clip))
        dc, dk = r["decision_clean"], r["decision_clip"]
        accept = " / ".join(
            f"{dc[s]['accept_at_threshold']:.1f}-{dk[s]['accept_at_threshold']:.1f}" for s in sets
        )
        at_clip = (
            " / ".join(f"{dk[s]['accept_at_clip_threshold']:.1f}" for s in sets)
            + f" (imp. {np.mean([dk[s]['impostor_at_clip_threshold'] for s in sets]):.2f} %)"
            if r["clip_threshold"] is not None
            else "-"
        )
        impostors = (
            f"{np.mean([dc[s]['impostor_at_threshold'] for s in sets]):.2f} / "
            f"{np.mean([dk[s]['impostor_at_threshold'] for s in sets]):.2f} %"
        )
        print(
            f"| {r['model']} ({r['threshold']:.4f}"
            + (f", clip {r['clip_threshold']:.4f}" if r["clip_threshold"] is not None else "")
            + f") | {_row(clean)} | {_row(clip)} | **{loss:.1f}** | {accept} | {at_clip} "
            f"| {impostors} | {r['cosine_mean']:.3f} ({r['cosine_p10']:.3f}) |"
        )
        if "rank1_kept" in r:
            kept_rows.append(_route_row(r, "kept", clean, sets))
        if "rank1_truth" in r:
            truth_rows.append(_route_row(r, "truth", clean, sets))
    if kept_rows:
        print(
            "\nClean probes cut to the frames their clip kept (the frames' share of the loss):\n"
            "\n| model | rank-1 NM / BG / CL | loss (mean) | accepted at threshold |"
            "\n|---|---|---:|---|"
        )
        print("\n".join(kept_rows))
    if truth_rows:
        print(
            "\nThose frames as perfect masks through the same cameras (no segmentation):\n"
            "\n| model | rank-1 NM / BG / CL | loss (mean) | accepted at threshold |"
            "\n|---|---|---:|---|"
        )
        print("\n".join(truth_rows))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"clip_walks": summary, "models": results}, indent=2, default=float)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
