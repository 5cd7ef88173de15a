"""A/B of the export-time 3D-conv rewrites: ORT latency per backbone layout, beside eager.

One ONNX file per layout (``model.export.BACKBONE_LAYOUTS``: plain Conv3d, time-stacked 2-D
convs, frames tiled down the height), exported from the same model and timed in one process,
beside eager PyTorch, so the comparison is not disturbed by drift between runs. ``--weights``
times the shipped network instead of a random-init one (same speed, realistic outputs). Usage:

    .venv/bin/python bench/conv_rewrite_ab.py lite paper
    .venv/bin/python bench/conv_rewrite_ab.py lite --weights models/gaitid-lmgcs.pt \
        --layouts time-stacked tiled --cases 80x1 --repeats 20 --no-spinning
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES
from gaitid.model.export import BACKBONE_LAYOUTS, export_onnx, load_checkpoint_model
from gaitid.model.registry import create_model

CASES = ("30x1", "30x8", "80x1", "80x8")


def _median_ms_per_walk(run, batch: int, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1000.0 / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layouts", nargs="+", default=list(BACKBONE_LAYOUTS))
    parser.add_argument("--cases", nargs="+", default=list(CASES), help="FRAMESxBATCH")
    parser.add_argument("--weights", type=Path, help="a checkpoint instead of random init")
    parser.add_argument("--no-spinning", action="store_true", help="the service's session options")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    if args.no_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    cases = [tuple(int(v) for v in case.split("x")) for case in args.cases]
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            torch.manual_seed(0)
            if args.weights is not None:
                model = load_checkpoint_model(args.weights)[0]
            else:
                model = create_model(variant).eval()
            meta = {
                "model_name": "lmgcs",
                "variant": variant,
                "version": "ab",
                "training_data": "none",
            }
            sessions = {}
            for layout in args.layouts:
                path = Path(tmp) / f"{variant}-{layout}.onnx"
                export_onnx(model, path, metadata=meta, backbone=layout)
                sessions[layout] = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            for frames, batch in cases:
                x = np.random.default_rng(0).random((batch, frames, 64, 44), dtype=np.float32)
                lengths = np.full(batch, frames, np.int64)
                feed = {INPUT_SILHOUETTES: x, INPUT_LENGTHS: lengths}
                ort_ms = {
                    layout: _median_ms_per_walk(
                        functools.partial(session.run, None, feed), batch, args.repeats
                    )
                    for layout, session in sessions.items()
                }
                xt, lt = torch.from_numpy(x), torch.from_numpy(lengths)
                with torch.no_grad():
                    eager = _median_ms_per_walk(
                        functools.partial(model, xt, lt), batch, args.repeats
                    )
                    reference = model(xt, lt).embedding.numpy()
                diff = max(
                    float(np.abs(session.run(None, feed)[0] - reference).max())
                    for session in sessions.values()
                )
                timings = ", ".join(f"ORT {name} {ms:.1f}" for name, ms in ort_ms.items())
                print(
                    f"{variant} T={frames} B={batch}: eager {eager:.1f} ms/walk, {timings} "
                    f"(max |diff| vs eager {diff:.1e})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
