"""Embed every walk of an OpenGait-layout dataset with an ONNX model; save them for the benchmarks.

The search benchmark (``bench/faiss_index.py``) draws its galleries from the distribution of
these embeddings, so they must come from the model a deployment serves: the shipped one.

    .venv/bin/python ../shared/tools/casiab_expand.py ../shared/data/casia-b-train ../data/casia-b
    .venv/bin/python bench/real_embeddings.py --data ../data/casia-b \
        --model models/gaitid-lmgcs.onnx --out ../runs/bench/real-embeddings.npz

Output: an ``.npz`` with ``embeddings`` (N, 256) float32 L2-normalised, and ``subjects``,
``conditions``, ``views`` (N,) strings, plus ``model`` (the file's name, not its path).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="OpenGait-layout root")
    parser.add_argument("--model", type=Path, required=True, help="ONNX model file")
    parser.add_argument("--out", type=Path, required=True, help=".npz to write")
    parser.add_argument("--subjects", help="e.g. 001-074 (default: every subject)")
    parser.add_argument("--batch-size", type=int, default=1, help="walks per ONNX call")
    args = parser.parse_args(argv)

    from gaitid.training.data.opengait import parse_subject_spec
    from gaitid.training.evaluation.extract import features_from_onnx, load_eval_walks

    chosen = parse_subject_spec(args.subjects) if args.subjects else None
    t0 = time.perf_counter()
    keys, walks = load_eval_walks(args.data.resolve(), chosen)
    print(f"{len(walks)} walks loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    features = features_from_onnx(args.model, keys, walks, batch_size=args.batch_size)
    print(f"embedded in {time.perf_counter() - t0:.1f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        embeddings=features.embeddings,
        subjects=features.subjects,
        conditions=features.conditions,
        views=features.views,
        model=np.array(args.model.name),
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
