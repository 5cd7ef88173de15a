"""Rank-1 of an ONNX model at a larger gallery than the held-out subjects make.

The validation gallery holds 12 held-out subjects (063-074); the withheld CASIA-B test and most
deployments hold many more people. This embeds the held-out subjects' walks (every condition)
and the gallery walks (nm-01..04) of ``--distractors`` subjects, and prints per probe set the
protocol's rank-1, the beta-binomial extrapolation to ``--gallery`` subjects, the held-out
gallery padded with distractors up to that size, how often one impostor of each kind beats the
genuine subject, and how well the extrapolation predicts the full held-out gallery from half of
it (``gaitid.training.evaluation.gallery_size``). Usage::

    .venv/bin/python bench/gallery_size.py --model models/gaitid-lmgcs.onnx \\
        --data data/casia-b --subjects 063-074 --distractors 001-062 --gallery 50 \\
        --cache ../runs/cache --json ../runs/bench/gallery-size.json

With ``--probe-data DIR`` (``gaitid clip-walks`` output) the same figures are printed twice:
for the probes read through camera clips and for the same walks' clean silhouettes (the walks
the clip route refused left out of both), against the clean gallery, so the clip route's
rank-1 loss can be read at the larger gallery too.

The distractors of the shipped model are subjects it trained on (it has seen every CASIA-B
subject but 063-074). Measured on it, they beat more held-out probes than the held-out
impostors do, so the padded figure leans pessimistic and the extrapolation optimistic (the
module's doc says why); the two bracket what a larger gallery of unseen people is expected to
give, without being bounds.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from gaitid.training.data.opengait import parse_subject_spec
from gaitid.training.evaluation.embedding_cache import EmbeddingCache
from gaitid.training.evaluation.extract import (
    features_from_onnx,
    load_eval_walks,
    load_route_walks,
)
from gaitid.training.evaluation.gallery_size import estimate_gallery_size, estimates_table
from gaitid.training.evaluation.protocols import CASIA_B_GALLERY


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="ONNX file")
    parser.add_argument("--data", type=Path, required=True, help="OpenGait-layout root")
    parser.add_argument("--subjects", default="063-074", help="held-out subjects")
    parser.add_argument("--distractors", default=None, help="e.g. 001-062 (gallery walks only)")
    parser.add_argument("--gallery", type=int, default=50, help="target gallery size")
    parser.add_argument("--probe-data", type=Path, default=None, help="clip walks (probes)")
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache directory")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    cache = EmbeddingCache(args.cache) if args.cache else None
    started = time.monotonic()
    subjects = parse_subject_spec(args.subjects)
    keys, walks = load_eval_walks(args.data.resolve(), subjects)
    routes = {"clean": features_from_onnx(args.model, keys, walks, cache=cache)}
    if args.probe_data:
        route_keys, route_walks = load_route_walks(
            args.data.resolve(), args.probe_data.resolve(), subjects, CASIA_B_GALLERY
        )
        read = set(route_keys)  # the clean route keeps the walks the clip route kept
        keep = np.array([key.condition in CASIA_B_GALLERY or key in read for key in keys])
        routes = {
            "clean": routes["clean"].subset(keep),
            "clip": features_from_onnx(args.model, route_keys, route_walks, cache=cache),
        }
    distractors = None
    if args.distractors:
        d_keys, d_walks = load_eval_walks(
            args.data.resolve(),
            parse_subject_spec(args.distractors),
            lambda key: key.condition in CASIA_B_GALLERY,
        )
        distractors = features_from_onnx(args.model, d_keys, d_walks, cache=cache)
    estimates = {
        route: estimate_gallery_size(features, args.gallery, distractors=distractors)
        for route, features in routes.items()
    }
    elapsed = time.monotonic() - started
    print(
        f"{args.model.name}: held out {args.subjects}, distractors {args.distractors or 'none'}, "
        f"{platform.processor() or platform.machine()}, {elapsed:.0f} s"
    )
    for route, table in estimates.items():
        print(f"\n{route} probes:\n{estimates_table(table)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": args.model.name,
            "subjects": args.subjects,
            "distractors": args.distractors,
            "probe_data": str(args.probe_data) if args.probe_data else None,
            "estimates": {
                route: {name: e.as_dict() for name, e in table.items()}
                for route, table in estimates.items()
            },
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
