"""A/B of the export-time 3D-conv rewrite: ORT latency with and without time-stacked convs.

Both ONNX files are exported from the same random-init model and timed in one process, beside
eager PyTorch, so the comparison is not disturbed by drift between runs. Usage:

    .venv/bin/python bench/conv_rewrite_ab.py lite paper
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
from gaitid.model.export import export_onnx
from gaitid.model.registry import create_model

CASES = ((30, 1), (30, 8), (80, 1), (80, 8))


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants:
            torch.manual_seed(0)
            model = create_model(variant).eval()
            meta = {
                "model_name": "lmgcs",
                "variant": variant,
                "version": "ab",
                "training_data": "none",
            }
            sessions = {}
            for stacked in (False, True):
                path = Path(tmp) / f"{variant}-{stacked}.onnx"
                export_onnx(model, path, metadata=meta, stack_time=stacked)
                sessions[stacked] = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            for frames, batch in CASES:
                x = np.random.default_rng(0).random((batch, frames, 64, 44), dtype=np.float32)
                lengths = np.full(batch, frames, np.int64)
                feed = {INPUT_SILHOUETTES: x, INPUT_LENGTHS: lengths}
                ort_ms = {
                    stacked: _median_ms_per_walk(
                        functools.partial(session.run, None, feed), batch, args.repeats
                    )
                    for stacked, session in sessions.items()
                }
                xt, lt = torch.from_numpy(x), torch.from_numpy(lengths)
                with torch.no_grad():
                    eager = _median_ms_per_walk(
                        functools.partial(model, xt, lt), batch, args.repeats
                    )
                    reference = model(xt, lt).embedding.numpy()
                diff = np.abs(sessions[True].run(None, feed)[0] - reference).max()
                print(
                    f"{variant} T={frames} B={batch}: eager {eager:.0f} ms/walk, "
                    f"ORT {ort_ms[False]:.0f}, ORT time-stacked {ort_ms[True]:.0f} "
                    f"(max |diff| vs eager {diff:.1e})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
