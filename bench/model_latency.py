"""CPU latency of the LMGCS network: PyTorch eager vs ONNX Runtime, with FLOPs and GFLOP/s.

Measures, for each variant (random-init weights; latency does not depend on their values):

1. the machine's matmul peak: best fp32 GFLOP/s of a 2048^2 torch matmul on ``--threads``;
2. per walk latency for T in ``--frames`` and batch in ``--batches``: eager PyTorch
   (``inference_mode``) vs ONNX Runtime (ORT_ENABLE_ALL, ``--threads`` intra-op threads);
3. at T=30, batch 1: what changes ORT speed -- graph optimisation level, intra-op threads,
   and dynamic int8 quantisation (with the embedding agreement vs fp32 it costs);
4. ``--lite-candidates``: the same T=30 measurement for the CPU reductions ``lite`` was
   chosen from (model/README.md).

Usage: ``.venv/bin/python bench/model_latency.py --json /tmp/latency.json``
Timings are medians of ``--repeats`` runs after one warm-up; FLOPs count conv/matmul only
(``gaitid.model.info.count_flops``, 1 multiply-add = 2 FLOPs).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from gaitid.contract import INPUT_LENGTHS, INPUT_SILHOUETTES  # noqa: E402
from gaitid.model.config import LMGCSConfig  # noqa: E402
from gaitid.model.export import export_onnx  # noqa: E402
from gaitid.model.info import count_flops  # noqa: E402
from gaitid.model.lmgcs import LMGCS  # noqa: E402
from gaitid.model.registry import resolve_config  # noqa: E402

logger = logging.getLogger("bench.model_latency")

#: CPU reductions compared when choosing ``lite`` (all with GSFE 1 x 1, heads 4, FFN 256).
LITE_CANDIDATES: dict[str, dict[str, Any]] = {
    "16/32/64/64 pool01 strips4 m16": {
        "channels": (16, 32, 64, 64),
        "pool_after": (0, 1),
        "local_strips": 4,
        "parts": 16,
    },
    "16/32/64/64 pool012 strips4 m8": {
        "channels": (16, 32, 64, 64),
        "pool_after": (0, 1, 2),
        "local_strips": 4,
        "parts": 8,
    },
    "16/32/64/64 pool01 global m16": {
        "channels": (16, 32, 64, 64),
        "pool_after": (0, 1),
        "local_strips": 0,
        "parts": 16,
    },
    "32/64/128/128 pool01 strips8 m16": {
        "channels": (32, 64, 128, 128),
        "pool_after": (0, 1),
        "local_strips": 8,
        "parts": 16,
    },
}
LITE_COMMON = {"enc_layers": 1, "dec_layers": 1, "heads": 4, "ffn_dim": 256}


#: A warm-up call longer than this is itself representative: do only one more timed call.
LONG_CALL_S = 5.0


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls after one warm-up call.

    Calls that take longer than ``LONG_CALL_S`` (the paper variant at T=80, batch 8) are
    timed once after the warm-up to keep the run within minutes.
    """
    start = time.perf_counter()
    fn()
    if time.perf_counter() - start > LONG_CALL_S:
        repeats = 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(threads: int, size: int = 2048, repeats: int = 10) -> float:
    """Best fp32 GFLOP/s of a ``size``^2 matmul: the machine's practical compute ceiling."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def make_session(
    path: Path, threads: int, level: ort.GraphOptimizationLevel, spinning: bool = True
) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    if not spinning:
        # idle worker threads sleep instead of busy-waiting: kinder to a shared machine
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def inputs(batch: int, frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    silhouettes = (torch.rand(batch, frames, 64, 44, generator=generator) > 0.5).float()
    return silhouettes, torch.full((batch,), frames, dtype=torch.int64)


def ort_runner(session: ort.InferenceSession, x: torch.Tensor, lengths: torch.Tensor):
    feeds = {INPUT_SILHOUETTES: x.numpy(), INPUT_LENGTHS: lengths.numpy()}
    return lambda: session.run(None, feeds)[0]


def eager_runner(model: LMGCS, x: torch.Tensor, lengths: torch.Tensor):
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(x, lengths).embedding

    return run


def export(model: LMGCS, name: str, workdir: Path) -> Path:
    meta = {"variant": name, "version": "bench", "training_data": "none (random init)"}
    return export_onnx(model, workdir / f"{name}.onnx", metadata=meta)


def bench_variant(
    name: str, config: LMGCSConfig, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    """Main table (eager vs ORT) plus the T=30 batch-1 ORT knob study for one config."""
    torch.manual_seed(0)
    model = LMGCS(config).eval()
    path = export(model, name.replace("/", "-").replace(" ", "_"), workdir)
    rows = []
    session = make_session(path, args.threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    for frames in args.frames:
        flops_one = sum(count_flops(model, frames).values())
        for batch in args.batches:
            x, lengths = inputs(batch, frames)
            torch.set_num_threads(args.threads)
            eager = median_seconds(eager_runner(model, x, lengths), args.repeats) / batch
            onnx = median_seconds(ort_runner(session, x, lengths), args.repeats) / batch
            row = {
                "variant": name,
                "frames": frames,
                "batch": batch,
                "gflops": flops_one / 1e9,
                "eager_ms": eager * 1e3,
                "ort_ms": onnx * 1e3,
                "eager_gflops_s": flops_one / eager / 1e9,
                "ort_gflops_s": flops_one / onnx / 1e9,
            }
            logger.info("%s", row)
            rows.append(row)
    return {"rows": rows, "knobs": knob_study(model, path, args) if args.knobs else []}


def knob_study(model: LMGCS, path: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """ORT at T=30, batch 1 under each setting; int8 also reports embedding agreement."""
    x, lengths = inputs(1, 30)
    probe_x, probe_lengths = inputs(8, 30, seed=1)
    with torch.inference_mode():
        reference = model(probe_x, probe_lengths).embedding.numpy()
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    settings: list[tuple[str, Path, int, ort.GraphOptimizationLevel, bool]] = [
        (f"opt={level}", path, args.threads, value, True) for level, value in levels.items()
    ]
    settings.append(("opt=all threads=1", path, 1, levels["all"], True))
    settings.append(("opt=all no-spinning", path, args.threads, levels["all"], False))
    if args.int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        for label, op_types in (("MatMul/Gemm", ["MatMul", "Gemm"]), ("all ops", None)):
            quantized = path.with_name(f"{path.stem}.int8-{len(op_types or [])}.onnx")
            quantize_dynamic(
                str(path),
                str(quantized),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=op_types,
            )
            settings.append(
                (f"opt=all dynamic-int8 {label}", quantized, args.threads, levels["all"], True)
            )
    results = []
    for label, model_path, threads, level, spinning in settings:
        session = make_session(model_path, threads, level, spinning)
        seconds = median_seconds(ort_runner(session, x, lengths), args.repeats)
        got = session.run(
            None, {INPUT_SILHOUETTES: probe_x.numpy(), INPUT_LENGTHS: probe_lengths.numpy()}
        )[0]
        cosine = float((got * reference).sum(axis=1).min())
        result = {
            "setting": label,
            "ms": seconds * 1e3,
            "min_cosine_vs_torch": cosine,
            "max_abs_diff": float(np.abs(got - reference).max()),
        }
        logger.info("%s", result)
        results.append(result)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["lite", "paper"])
    parser.add_argument("--frames", nargs="+", type=int, default=[30, 80])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-knobs", dest="knobs", action="store_false")
    parser.add_argument("--no-int8", dest="int8", action="store_false")
    parser.add_argument("--lite-candidates", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logger.setLevel(logging.INFO)
    report: dict[str, Any] = {
        "threads": args.threads,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
    }
    report["matmul_peak_gflops_s"] = matmul_peak(args.threads)
    logger.info(
        "matmul peak %.1f GFLOP/s on %d threads", report["matmul_peak_gflops_s"], args.threads
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.lite_candidates:
            candidates = {}
            for name, fields in LITE_CANDIDATES.items():
                config = resolve_config("paper", **LITE_COMMON, **fields)
                sub = argparse.Namespace(**{**vars(args), "knobs": False})
                candidates[name] = bench_variant(name, config, sub, workdir)["rows"]
            report["lite_candidates"] = candidates
        else:
            report["variants"] = {
                v: bench_variant(v, resolve_config(v), args, workdir) for v in args.variants
            }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
