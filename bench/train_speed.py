"""Seconds per training iteration of LMGCS variants at several window lengths (CPU or GPU).

Measures what the schedule choice rests on: the cost of one P x K training step (forward,
the three loss terms, backward, Adam) on random silhouettes, after warm-up iterations, for
each ``variant x frames`` combination, plus the forward-only cost per frame (what the
embedding fit and validation pay). Usage::

    python bench/train_speed.py --variants lite --frames 20 30 --iterations 6
    python bench/train_speed.py --frames 20 --precisions fp32 bf16
    python bench/train_speed.py --frames 20 --precisions bf16 --compile   # torch.compile too
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time

import torch

from gaitid.model import create_model
from gaitid.training.config import LossConfig
from gaitid.training.objective import compute_loss


def step_seconds(
    variant: str,
    frames: int,
    p: int,
    k: int,
    iterations: int,
    warmup: int,
    bf16: bool = False,
    compiled: bool = False,
) -> float:
    """Median wall seconds of one training iteration of ``variant`` on ``frames``-frame windows
    (``bf16``: the forward under bf16 autocast, as ``trainer.amp`` runs it; ``compiled``: the
    forward through ``torch.compile``, whose compilation falls in the warm-up steps)."""
    torch.manual_seed(0)
    model = create_model(variant, num_classes=62)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    forward = torch.compile(model) if compiled else model
    x = (torch.rand(p * k, frames, 64, 44) > 0.5).float()
    lengths = torch.full((p * k,), frames, dtype=torch.int64)
    labels = torch.arange(p).repeat_interleave(k)
    times = []
    for i in range(warmup + iterations):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            output = forward(x, lengths)
        loss = compute_loss(output, labels, LossConfig())
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        optimizer.step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def forward_seconds_per_frame(variant: str, frames: int, batch: int) -> float:
    """Inference seconds per frame (eval mode, no grad) at ``batch`` walks of ``frames``."""
    model = create_model(variant, num_classes=62).eval()
    x = (torch.rand(batch, frames, 64, 44) > 0.5).float()
    lengths = torch.full((batch,), frames, dtype=torch.int64)
    with torch.inference_mode():
        model(x, lengths)
        start = time.perf_counter()
        for _ in range(2):
            model(x, lengths)
    return (time.perf_counter() - start) / (2 * batch * frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["lite"])
    parser.add_argument("--frames", nargs="+", type=int, default=[20, 30])
    parser.add_argument("--p", type=int, default=8)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument(
        "--precisions",
        nargs="+",
        choices=["fp32", "bf16"],
        default=["fp32"],
        help="step precisions to time (bf16 = autocast, what amp: auto picks with bf16 units)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="time each step a second time with the forward through torch.compile",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, batch {args.p} x {args.k}"
    )
    from gaitid.training.setup import cpu_has_bf16_units

    print(f"# bf16 matrix units (amx_bf16 / avx512_bf16): {cpu_has_bf16_units()}")
    print(
        "| variant | frames | precision | s / iteration | frames / s (train) | forward ms / frame |"
    )
    print("|---|---:|---|---:|---:|---:|")
    rows = []
    for variant in args.variants:
        f = forward_seconds_per_frame(variant, 80, 8)
        for frames in args.frames:
            for precision, compiled in itertools.product(
                args.precisions, (False, True) if args.compile else (False,)
            ):
                s = step_seconds(
                    variant,
                    frames,
                    args.p,
                    args.k,
                    args.iterations,
                    args.warmup,
                    bf16=precision == "bf16",
                    compiled=compiled,
                )
                label = f"{precision}, compiled" if compiled else precision
                rows.append(
                    {
                        "variant": variant,
                        "frames": frames,
                        "precision": label,
                        "s_per_it": s,
                        "fwd_s_per_frame": f,
                    }
                )
                print(
                    f"| {variant} | {frames} | {label} | {s:.2f} | "
                    f"{args.p * args.k * frames / s:.0f} | {1000 * f:.2f} |",
                    flush=True,
                )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
