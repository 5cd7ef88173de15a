"""HTTP benchmark of the service: enroll and identify latency and throughput on loopback.

For each entry of ``--modes`` (default: unbatched, batched, unbatched, batched; alternating
evens out a machine load that drifts during the run) the script starts a fresh ``gaitid serve``
in a subprocess on 127.0.0.1 with a temporary data directory, migrates its SQLite database,
creates an admin key with ``gaitid keys create --scope admin`` (the last output line is the
key), and then, for each concurrency level, sends a bounded number of ``POST /enroll`` requests
(new identities, growing the gallery) followed by the same number of ``POST /identify``
requests. Every server sees the same requests in the same order, so gallery sizes match at
every step. Results of the servers of one mode are pooled; the server's own decode, inference
and queue means come from its ``/metrics``.

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

# The live-server helpers are shared with the service tests; this script runs by path, so put
# the repository root (not the working directory) on the import path to reach them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.utils.live_server import GAITID, cli_env, live_server

logger = logging.getLogger("bench.service_http")


@dataclass(frozen=True)
class Measurement:
    """One (server, op, concurrency) step: raw latencies and the server's batch counters."""

    mode: str
    op: str
    concurrency: int
    latencies_ms: list[float]
    errors: int
    wall_s: float
    server: dict[str, float]  # deltas of the server's histogram sums and counts (/metrics)

    def server_mean(self, name: str) -> float | None:
        count = self.server.get(f"{name}_count", 0.0)
        return self.server.get(f"{name}_sum", 0.0) / count if count else None


@dataclass(frozen=True)
class Result:
    """All steps of one (mode, op, concurrency) pooled over the repeated servers."""

    mode: str
    op: str
    concurrency: int
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    throughput_rps: float
    mean_batch: float | None
    decode_ms: float | None  # mean upload decoding + preprocessing per request
    inference_ms: float | None  # mean ONNX Runtime time of the run a request was part of
    queue_ms: float | None  # mean wait for the batcher
    search_ms: float | None  # mean gallery search (index + SQL lookup) per identify


def pool(measurements: list[Measurement]) -> list[Result]:
    """Pool repeated runs: percentiles over all latencies, throughput = requests / total wall."""
    keys = dict.fromkeys((m.mode, m.op, m.concurrency) for m in measurements)
    results = []
    for mode, op, concurrency in keys:
        group = [
            m for m in measurements if (m.mode, m.op, m.concurrency) == (mode, op, concurrency)
        ]
        latencies = [x for m in group for x in m.latencies_ms]
        totals = {k: sum(m.server.get(k, 0.0) for m in group) for k in group[0].server}
        pooled = Measurement(mode, op, concurrency, latencies, 0, 0.0, totals)

        def ms(name: str, pooled: Measurement = pooled) -> float | None:
            mean = pooled.server_mean(name)
            return None if mean is None else mean * 1000.0

        results.append(
            Result(
                mode=mode,
                op=op,
                concurrency=concurrency,
                requests=len(latencies),
                errors=sum(m.errors for m in group),
                p50_ms=float(np.percentile(latencies, 50)),
                p99_ms=float(np.percentile(latencies, 99)),
                throughput_rps=len(latencies) / sum(m.wall_s for m in group),
                mean_batch=pooled.server_mean(BATCH),
                decode_ms=ms(DECODE),
                inference_ms=ms(INFERENCE),
                queue_ms=ms(QUEUE),
                search_ms=ms(SEARCH) if op == "identify" else None,
            )
        )
    return results


#: Upload kinds: raw masks as .npz, the same masks as a zip of PNG frames, or a camera clip
#: (the walker composited over a textured scene, mp4) that the server segments first.
UPLOAD_KINDS = ("npz", "zip", "clip")


def make_walks(count: int, seed: int, kind: str = "npz") -> list[bytes]:
    """``count`` raw synthetic walks, each as the bytes of one upload of ``kind``."""
    from gaitid.training.synth.dataset import SynthConfig, render_walk, subject_identity
    from tests.utils import clips, uploads

    config = SynthConfig(subjects=count, seed=seed, min_frames=40, max_frames=80)
    encoded = []
    for subject in range(count):
        rng = np.random.default_rng([seed, subject])
        masks = render_walk(subject_identity(seed, subject), "nm-01", 90, rng, config)
        if kind == "zip":
            encoded.append(uploads.encode_zip(masks))
        elif kind == "clip":
            crops = clips.walk_masks(masks)
            clip = clips.crossing_clip(frames=len(crops), seed=subject, masks=crops)
            encoded.append(clips.encode_mp4(clip.frames))
        else:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, masks=masks)
            encoded.append(buffer.getvalue())
    return encoded


def run_cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [*GAITID, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"gaitid {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def create_admin_key(env: dict[str, str], name: str) -> str:
    """A new admin key through ``gaitid keys create`` (the key is its output's last line)."""
    out = run_cli(["keys", "create", "--scope", "admin", "--name", name], env)
    return out.strip().splitlines()[-1].strip()


@contextmanager
def running_server(model: Path, batching: bool, workdir: Path, args: argparse.Namespace) -> Any:
    """A migrated, keyed ``gaitid serve`` on a free loopback port; yields (base URL, key)."""
    prefix = "batched-" if batching else "unbatched-"
    data_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=workdir))
    env = cli_env(
        data_dir,
        model,
        GAITID_BATCHING_ENABLED="true" if batching else "false",
        GAITID_INTRA_OP_THREADS=str(args.intra_op_threads),
        GAITID_BATCH_MAX_SIZE=str(args.max_batch),
        GAITID_BATCH_MAX_WAIT_MS=str(args.max_wait_ms),
        GAITID_LOG_LEVEL="warning",
    )
    run_cli(["db", "upgrade"], env)
    key = create_admin_key(env, "bench")
    with live_server(env, data_dir / "server.log", timeout=180) as server:
        yield server.url, key


#: Histograms of the service's /metrics read before and after each step.
BATCH = "gaitid_inference_batch_size"
DECODE = "gaitid_decode_seconds"
INFERENCE = "gaitid_inference_seconds"
QUEUE = "gaitid_inference_queue_seconds"
SEARCH = "gaitid_search_seconds"


def server_counters(url: str, key: str) -> dict[str, float]:
    """``<histogram>_sum`` and ``_count`` of the histograms above, from /metrics."""
    text = httpx.get(f"{url}/metrics", headers={"X-API-Key": key}, timeout=10).text
    wanted = {
        f"{h}_{part}"
        for h in (BATCH, DECODE, INFERENCE, QUEUE, SEARCH)
        for part in ("sum", "count")
    }
    values: dict[str, float] = dict.fromkeys(wanted, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            values[name] = float(value)
    return values


async def load(
    url: str,
    key: str,
    op: str,
    walks: list[bytes],
    concurrency: int,
    requests: int,
    prefix: str,
    filename: str = "walk.npz",
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
                files = {"file": (filename, walks[i % len(walks)], "application/octet-stream")}
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
) -> list[Measurement]:
    mode = "batched" if batching else "unbatched"
    measurements = []
    with running_server(model, batching, workdir, args) as (url, key):
        filename = {"npz": "walk.npz", "zip": "walk.zip", "clip": "walk.mp4"}[args.upload]
        asyncio.run(load(url, key, "enroll", walks, 2, 4, f"warmup-{mode}", filename))
        for concurrency in args.concurrency:
            n = max(args.min_requests, args.requests_per_worker * concurrency)
            for op in ("enroll", "identify"):
                before = server_counters(url, key)
                latencies, errors, wall = asyncio.run(
                    load(url, key, op, walks, concurrency, n, f"c{concurrency}", filename)
                )
                after = server_counters(url, key)
                step = Measurement(
                    mode,
                    op,
                    concurrency,
                    latencies,
                    errors,
                    wall,
                    {k: after[k] - before[k] for k in after},
                )
                logger.info(
                    "%s %s c=%d: p50 %.0f ms, %.2f req/s, mean batch %.2f",
                    mode,
                    op,
                    concurrency,
                    np.percentile(latencies, 50),
                    n / wall,
                    step.server_mean(BATCH) or 0.0,
                )
                measurements.append(step)
    return measurements


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def export_model(variant: str, out: Path) -> Path:
    run_cli(["export", "--random-init", variant, "--out", str(out)], dict(os.environ))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="ONNX file; default: export --variant")
    parser.add_argument("--variant", default="lite", help="random-init variant to export")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("batched", "unbatched"),
        default=["unbatched", "batched", "unbatched", "batched"],
        help="servers to run, in order (alternating twice evens out drifting machine load)",
    )
    parser.add_argument("--requests-per-worker", type=int, default=4)
    parser.add_argument("--min-requests", type=int, default=24)
    parser.add_argument("--walks", type=int, default=16, help="distinct synthetic walks")
    parser.add_argument(
        "--upload", choices=UPLOAD_KINDS, default="npz", help="what each request uploads"
    )
    parser.add_argument("--intra-op-threads", type=int, default=0)
    parser.add_argument("--max-batch", type=int, default=8, help="GAITID_BATCH_MAX_SIZE")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="GAITID_BATCH_MAX_WAIT_MS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary data dirs and server logs"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise

    workdir = Path(tempfile.mkdtemp(prefix="gaitid-bench-"))
    try:
        model = args.model or export_model(args.variant, workdir / f"{args.variant}.onnx")
        walks = make_walks(args.walks, args.seed, args.upload)
        sizes = [len(w) for w in walks]
        logger.info("%d walks, npz %d-%d bytes", len(walks), min(sizes), max(sizes))
        measurements: list[Measurement] = []
        for mode in args.modes:
            measurements += bench_mode(mode == "batched", model, walks, args, workdir)
    finally:
        if args.keep:
            logger.info("kept %s (server.log in each data dir)", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    results = pool(measurements)
    print(
        f"servers run: {' '.join(args.modes)}; "
        f"model: {args.model or 'random-init ' + args.variant}, uploads: {args.upload}, "
        f"{os.cpu_count()} CPUs, "
        f"max batch {args.max_batch}, max wait {args.max_wait_ms} ms"
    )
    print(
        "| op | concurrency | mode | requests | errors | p50 ms | p99 ms | req/s | mean batch "
        "| decode ms | inference ms | queue ms | search ms |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.op} | {r.concurrency} | {r.mode} | {r.requests} | {r.errors} | "
            f"{r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.throughput_rps:.2f} | {_fmt(r.mean_batch)} | "
            f"{_fmt(r.decode_ms, 0)} | {_fmt(r.inference_ms, 0)} | {_fmt(r.queue_ms, 0)} | "
            f"{_fmt(r.search_ms, 2)} |"
        )
    print("\n| op | concurrency | req/s batched/unbatched | p50 batched/unbatched |")
    print("|---|---:|---:|---:|")
    for on in (r for r in results if r.mode == "batched"):
        off = next(
            (
                r
                for r in results
                if r.mode == "unbatched" and r.op == on.op and r.concurrency == on.concurrency
            ),
            None,
        )
        if off is None:
            continue
        print(
            f"| {on.op} | {on.concurrency} | {on.throughput_rps / off.throughput_rps:.2f} | "
            f"{on.p50_ms / off.p50_ms:.2f} |"
        )
    if args.json:
        raw = [asdict(m) for m in measurements]
        args.json.write_text(json.dumps({"pooled": [asdict(r) for r in results], "runs": raw}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
