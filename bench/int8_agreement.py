"""How closely int8 files embed real walks like their fp32 file, on this machine's CPU.

Integer kernels differ between CPUs: without VNNI (AVX2 only, or AVX-512 without VNNI), ONNX
Runtime's U8S8 kernels sum pairs of products in 16 bits, which 8-bit weights can saturate, so
the same int8 file can be right on one CPU and wrong on another. This embeds ``--walks``
random walks of ``--subjects`` (pretreated, at most 80 frames, batch 1) with the fp32 file and
each int8 file as the service runs them (``served_shape.session``) and prints the cosine of
each walk's two embeddings (mean and minimum) with the CPU's VNNI flags. Usage::

    .venv/bin/python bench/int8_agreement.py --fp32 models/gaitid-lmgcs.onnx \\
        --int8 models/gaitid-lmgcs.int8.onnx --data data/casia-b --subjects 063-074
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
from served_shape import session  # bench/ is on sys.path when this script runs

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES, OUTPUT_EMBEDDING, batch_sequences
from gaitid.cpu import INT8_VNNI_FLAGS, cpu_flags
from gaitid.preprocess import to_network_input
from gaitid.training.data.opengait import draw_walks, parse_subject_spec

#: The longest walk embedded (about what the service sees).
FRAMES = 80


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fp32", type=Path, required=True)
    parser.add_argument("--int8", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, required=True, help="OpenGait-layout root")
    parser.add_argument("--subjects", default="063-074")
    parser.add_argument("--walks", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    drawn = draw_walks(
        args.data.resolve(), parse_subject_spec(args.subjects), args.walks, args.seed
    )
    walks = [to_network_input(walk)[:FRAMES] for walk in drawn]

    def embed(path: Path) -> np.ndarray:
        runner = session(path, args.threads, spinning=False)
        rows = []
        for walk in walks:
            silhouettes, lengths = batch_sequences([walk])
            feeds = {INPUT_SILHOUETTES: silhouettes, INPUT_LENGTHS: lengths}
            rows.append(runner.run([OUTPUT_EMBEDDING], feeds)[0][0])
        return np.stack(rows)

    reference = embed(args.fp32)
    flags = sorted(cpu_flags() & INT8_VNNI_FLAGS)
    results = {}
    print(f"{platform.processor() or platform.machine()}, VNNI: {', '.join(flags) or 'none'}")
    for path in args.int8:
        cosines = np.sum(reference * embed(path), axis=1)
        results[str(path)] = {"mean": float(cosines.mean()), "min": float(cosines.min())}
        print(
            f"{path}: cosine to {args.fp32.name} over {len(walks)} walks of {args.subjects}: "
            f"mean {cosines.mean():.4f}, min {cosines.min():.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"vnni": flags, "files": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
