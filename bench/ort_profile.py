"""Where ONNX Runtime spends a run: kernel time by op type, and an A/B of exports in one process.

For each ONNX file: ``--runs`` profiled runs at T frames, batch 1, 2 threads, the service's
session options (graph optimisation ALL, no spinning); prints the share and ms per run of the
top op types. With two or more files it also times them alternately (median of ``--runs``
each, unprofiled) and prints the largest output difference against the first.

    .venv/bin/python bench/ort_profile.py models/gaitid-lmgcs.onnx ../runs/bench/restacked.onnx
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES


def _session(path: Path, threads: int, profile_dir: Path | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_dir / path.stem)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def op_profile(
    path: Path, feeds: dict[str, np.ndarray], runs: int, threads: int, nodes: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sess = _session(path, threads, Path(tmp))
        for _ in range(runs):
            sess.run(None, feeds)
        events = json.loads(Path(sess.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    by_node: collections.Counter[str] = collections.Counter()
    shapes: dict[str, tuple[str, list[list[int]], list[list[int]]]] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            args = event["args"]
            by_op[args["op_name"]] += event["dur"]
            by_node[event["name"]] += event["dur"]
            shapes[event["name"]] = (
                args["op_name"],
                [next(iter(d.values())) for d in args.get("input_type_shape", [])],
                [next(iter(d.values())) for d in args.get("output_type_shape", [])],
            )
    total = sum(by_op.values())
    print(f"\n{path.name}: kernel time by op type ({runs} runs)")
    print("| op | share | ms per run |\n|---|---:|---:|")
    for op, micros in by_op.most_common(12):
        print(f"| {op} | {micros / total:.1%} | {micros / runs / 1e3:.1f} |")
    if nodes:
        print(f"\n{path.name}: the {nodes} slowest nodes (GFLOP/s for convolutions)")
        print("| op | inputs | ms per run | GFLOP/s |\n|---|---|---:|---:|")
        for name, micros in by_node.most_common(nodes):
            op, inputs, outputs = shapes[name]
            rate = ""
            if op.endswith("Conv") and len(inputs) > 1 and outputs:
                # 2 x multiply-adds: every output value reduces over the weight's C/g x kernel
                flops = 2 * float(np.prod(outputs[0])) * float(np.prod(inputs[1][1:]))
                rate = f"{flops / (micros / runs * 1e-6) / 1e9:.0f}"
            print(f"| {op} | {inputs[:2]} | {micros / runs / 1e3:.2f} | {rate} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--frames", type=int, default=80)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=0, help="also list the N slowest nodes")
    args = parser.parse_args(argv)
    x = (np.random.default_rng(0).random((1, args.frames, 64, 44)) > 0.5).astype(np.float32)
    feeds = {INPUT_SILHOUETTES: x, INPUT_LENGTHS: np.array([args.frames], np.int64)}
    for path in args.models:
        op_profile(path, feeds, args.runs, args.threads, args.nodes)
    if len(args.models) < 2:
        return 0
    sessions = [_session(p, args.threads, None) for p in args.models]
    outputs = [s.run(None, feeds)[0] for s in sessions]
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(args.runs):
        for i, sess in enumerate(sessions):
            start = time.perf_counter()
            sess.run(None, feeds)
            times[i].append(time.perf_counter() - start)
    print("\n| model | median ms | max abs diff vs the first |\n|---|---:|---:|")
    for path, spent, out in zip(args.models, times, outputs, strict=True):
        diff = float(np.abs(out - outputs[0]).max())
        print(f"| {path.name} | {1e3 * statistics.median(spent):.1f} | {diff:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
