"""HTTP benchmark of the service: enroll and identify latency and throughput on loopback.

For each mode (micro-batching on, then off) the script starts a fresh ``gaitid serve`` in a
subprocess on 127.0.0.1 with a temporary data directory, migrates its SQLite database, creates
an admin key with ``gaitid keys create --scope admin`` (the last output line is the key), and
then, for each concurrency level, sends a bounded number of ``POST /enroll`` requests (new
identities, growing the gallery) followed by the same number of ``POST /identify`` requests.
Both modes see the same requests in the same order, so their gallery sizes match at every step.

Uploads are ``.npz`` files of raw synthetic camera masks (320x240, 40-80 frames, from
``training.synth``), so every request pays for decoding and preprocessing as a real client's
would, not only for inference. The model is a random-initialised export (``--variant``, default
``lite``); its scores are meaningless but its cost is the real network's.

The client runs on the same machine as the server and takes CPU from it; on a 2-core machine
the absolute numbers are pessimistic, the batched/unbatched ratio is what to compare.

    .venv/bin/python bench/service_http.py --variant lite --concurrency 1 8 32
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

logger = logging.getLogger("bench.service_http")

#: The ``gaitid`` console script of the interpreter running this file (its virtualenv).
GAITID = [str(Path(sys.executable).parent / "gaitid")]


@dataclass(frozen=True)
class Result:
    mode: str
    op: str
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    throughput_rps: float
    mean_batch: float | None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_walks(count: int, seed: int) -> list[bytes]:
    """``count`` raw synthetic walks, each as the bytes of an ``.npz`` upload."""
    from training.synth.dataset import SynthConfig, render_walk, subject_identity

    config = SynthConfig(subjects=count, seed=seed, min_frames=40, max_frames=80)
    uploads = []
    for subject in range(count):
        rng = np.random.default_rng([seed, subject])
        masks = render_walk(subject_identity(seed, subject), "nm-01", 90, rng, config)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, masks=masks)
        uploads.append(buffer.getvalue())
    return uploads


def run_cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [*GAITID, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"gaitid {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


@contextmanager
def running_server(model: Path, batching: bool, workdir: Path, args: argparse.Namespace) -> Any:
    """A migrated, keyed ``gaitid serve`` on a free loopback port; yields (base URL, key)."""
    data_dir = workdir / ("batched" if batching else "unbatched")
    data_dir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "GAITID_DATA_DIR": str(data_dir),
        "GAITID_MODEL_PATH": str(model),
        "GAITID_HOST": "127.0.0.1",
        "GAITID_PORT": str(port),
        "GAITID_BATCHING_ENABLED": "true" if batching else "false",
        "GAITID_INTRA_OP_THREADS": str(args.intra_op_threads),
        "GAITID_BATCH_MAX_SIZE": str(args.max_batch),
        "GAITID_BATCH_MAX_WAIT_MS": str(args.max_wait_ms),
        "GAITID_LOG_LEVEL": "warning",
    }
    run_cli(["db", "upgrade"], env)
    key = run_cli(["keys", "create", "--scope", "admin", "--name", "bench"], env).strip()
    key = key.splitlines()[-1].strip()
    log = (data_dir / "server.log").open("w")
    server = subprocess.Popen([*GAITID, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited ({server.returncode}); see {log.name}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after 180 s; see {log.name}")
            time.sleep(0.5)
        yield url, key
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def batch_sizes(url: str, key: str) -> tuple[float, float]:
    """(sum, count) of the server's inference batch-size histogram, from /metrics."""
    text = httpx.get(f"{url}/metrics", headers={"X-API-Key": key}, timeout=10).text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("gaitid_inference_batch_size_sum"):
            total = float(line.split()[-1])
        elif line.startswith("gaitid_inference_batch_size_count"):
            count = float(line.split()[-1])
    return total, count


async def load(
    url: str,
    key: str,
    op: str,
    walks: list[bytes],
    concurrency: int,
    requests: int,
    prefix: str,
) -> tuple[list[float], int, float]:
    """Send ``requests`` requests from ``concurrency`` workers; (latencies ms, errors, wall s)."""
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": key}, limits=limits, timeout=120
    ) as client:

        async def worker() -> None:
            nonlocal errors
            for i in counter:
                files = {"file": ("walk.npz", walks[i % len(walks)], "application/octet-stream")}
                data = {"identity": f"{prefix}-{i}"} if op == "enroll" else {"top_k": "5"}
                t0 = time.perf_counter()
                response = await client.post(f"/{op}", files=files, data=data)
                latencies.append((time.perf_counter() - t0) * 1000.0)
                if response.status_code not in (200, 201):
                    errors += 1
                    logger.warning("%s -> %d %s", op, response.status_code, response.text[:200])

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return latencies, errors, wall


def bench_mode(
    batching: bool, model: Path, walks: list[bytes], args: argparse.Namespace, workdir: Path
) -> list[Result]:
    mode = "batched" if batching else "unbatched"
    results = []
    with running_server(model, batching, workdir, args) as (url, key):
        asyncio.run(load(url, key, "enroll", walks, 2, 4, f"warmup-{mode}"))
        for concurrency in args.concurrency:
            n = max(args.min_requests, args.requests_per_worker * concurrency)
            for op in ("enroll", "identify"):
                before = batch_sizes(url, key)
                latencies, errors, wall = asyncio.run(
                    load(url, key, op, walks, concurrency, n, f"c{concurrency}")
                )
                after = batch_sizes(url, key)
                runs = after[1] - before[1]
                result = Result(
                    mode=mode,
                    op=op,
                    concurrency=concurrency,
                    requests=n,
                    errors=errors,
                    p50_ms=float(np.percentile(latencies, 50)),
                    p99_ms=float(np.percentile(latencies, 99)),
                    throughput_rps=n / wall,
                    mean_batch=(after[0] - before[0]) / runs if runs else None,
                )
                logger.info("%s", result)
                results.append(result)
    return results


def export_model(variant: str, out: Path) -> Path:
    run_cli(["export", "--random-init", variant, "--out", str(out)], dict(os.environ))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="ONNX file; default: export --variant")
    parser.add_argument("--variant", default="lite", help="random-init variant to export")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests-per-worker", type=int, default=4)
    parser.add_argument("--min-requests", type=int, default=24)
    parser.add_argument("--walks", type=int, default=16, help="distinct synthetic walks")
    parser.add_argument("--intra-op-threads", type=int, default=0)
    parser.add_argument("--max-batch", type=int, default=8, help="GAITID_BATCH_MAX_SIZE")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="GAITID_BATCH_MAX_WAIT_MS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    workdir = Path(tempfile.mkdtemp(prefix="gaitid-bench-"))
    try:
        model = args.model or export_model(args.variant, workdir / f"{args.variant}.onnx")
        walks = make_walks(args.walks, args.seed)
        sizes = [len(w) for w in walks]
        logger.info("%d walks, npz %d-%d bytes", len(walks), min(sizes), max(sizes))
        results = bench_mode(True, model, walks, args, workdir)
        results += bench_mode(False, model, walks, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"model: {args.model or 'random-init ' + args.variant}, {os.cpu_count()} CPUs, "
        f"max batch {args.max_batch}, max wait {args.max_wait_ms} ms"
    )
    print("| op | concurrency | mode | requests | errors | p50 ms | p99 ms | req/s | mean batch |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        batch = f"{r.mean_batch:.2f}" if r.mean_batch is not None else "-"
        print(
            f"| {r.op} | {r.concurrency} | {r.mode} | {r.requests} | {r.errors} | "
            f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.throughput_rps:.2f} | {batch} |"
        )
    print("\n| op | concurrency | throughput batched/unbatched | p50 batched/unbatched |")
    print("|---|---:|---:|---:|")
    for on in (r for r in results if r.mode == "batched"):
        off = next(
            r
            for r in results
            if r.mode == "unbatched" and r.op == on.op and r.concurrency == on.concurrency
        )
        print(
            f"| {on.op} | {on.concurrency} | {on.throughput_rps / off.throughput_rps:.2f} | "
            f"{on.p50_ms / off.p50_ms:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
