"""The shipped model at the shape the service runs most: eager vs ONNX Runtime fp32 vs int8.

One process, one machine state: the matmul peak, eager PyTorch on the shipped weights
(``models/gaitid-lmgcs.pt``), ONNX Runtime on the shipped fp32 export, and (``--int8``) on its
static int8 model (``gaitid quantize``), each at T frames and batch 1 on ``--threads`` threads.
ONNX Runtime runs with the service's own session options (``gaitid.service.walks.inference``:
graph optimisation ALL, no spinning) and, for comparison, with spinning worker threads.
GFLOP/s count convolutions and matrix products only (``gaitid.model.info.count_flops``), so the
int8 column is "fp32-equivalent" work per second.

    .venv/bin/python bench/served_shape.py --int8 ../runs/bench/gaitid-lmgcs.int8.onnx
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from model_latency import matmul_peak  # bench/ is on sys.path when this script runs

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES
from gaitid.model.export import load_checkpoint_model
from gaitid.model.info import count_flops
from gaitid.service.walks.inference import session_options

REPO = Path(__file__).resolve().parents[1]


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def session(path: Path, threads: int, spinning: bool) -> ort.InferenceSession:
    """The service's session (``session_options``), or the same with spinning threads."""
    options = session_options(threads, 1)
    if spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=REPO / "models" / "gaitid-lmgcs.pt")
    parser.add_argument("--onnx", type=Path, default=REPO / "models" / "gaitid-lmgcs.onnx")
    parser.add_argument("--int8", type=Path, help="static int8 model (gaitid quantize)")
    parser.add_argument("--frames", type=int, nargs="+", default=[80, 30])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint_model(args.weights)
    model.eval()
    peak = matmul_peak(args.threads)
    print(
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads; "
        f"matmul peak {peak:.0f} GFLOP/s\n"
    )
    files = {"fp32": args.onnx} | ({"int8": args.int8} if args.int8 else {})
    sessions = {
        (name, spin): session(path, args.threads, spin)
        for name, path in files.items()
        for spin in (False, True)
    }
    rng = np.random.default_rng(0)
    rows = []
    print("| T | runtime | ms/walk | GFLOP/s | of peak | vs eager |")
    print("|---:|---|---:|---:|---:|---:|")
    for frames in args.frames:
        gflop = sum(count_flops(model, frames).values()) / 1e9
        x = (rng.random((1, frames, 64, 44)) > 0.5).astype(np.float32)
        lengths = np.array([frames], np.int64)
        xt, lt = torch.from_numpy(x), torch.from_numpy(lengths)

        def eager(xt: torch.Tensor = xt, lt: torch.Tensor = lt) -> object:
            with torch.inference_mode():
                return model(xt, lt).embedding

        timings = {"eager PyTorch": median_ms(eager, args.repeats)}
        feeds = {INPUT_SILHOUETTES: x, INPUT_LENGTHS: lengths}
        for (name, spin), sess in sessions.items():
            label = f"ORT {name}, {'spinning' if spin else 'service options (no spinning)'}"
            timings[label] = median_ms(lambda s=sess, f=feeds: s.run(None, f), args.repeats)
        base = timings["eager PyTorch"]
        for label, ms in timings.items():
            rate = gflop / (ms / 1e3)
            rows.append(
                {
                    "frames": frames,
                    "runtime": label,
                    "ms": ms,
                    "gflops": rate,
                    "of_peak": rate / peak,
                    "speedup_vs_eager": base / ms,
                }
            )
            print(
                f"| {frames} | {label} | {ms:.1f} | {rate:.0f} | {rate / peak:.0%} | "
                f"{base / ms:.2f}x |",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": peak, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
