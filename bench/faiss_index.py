"""FAISS index benchmark: build time, single-query search latency and recall@10 vs exact search.

Runs :class:`service.search.index.VectorIndex` (the class the service uses) for each index kind at
each gallery size, on 256-d unit vectors.

Data: random unit vectors are a poor proxy for a gallery (in 256-d they are all nearly
orthogonal, so every neighbour is about equally far and approximate search looks worse or
better than it is). Instead each of ``n / per_identity`` identities is a random unit centre and
each template is ``normalise(centre + noise)`` with noise of norm ``--noise`` (0.75 gives a
template-to-centre cosine of about 0.8 and same-identity template pairs about 0.64). Queries are
fresh templates of random enrolled identities, as a probe walk of a known person would be.
Ground truth is exact inner-product search (``IndexFlatIP``) over the same vectors.

IVF ``nlist`` is ``--nlist`` or, by default, the power of two nearest ``sqrt(n)``
(10k -> 128, 100k -> 256, 1M -> 1024): the low end of FAISS's guidance, which keeps k-means on
two cores to about a minute at 1M. Below ``39 * nlist`` vectors the service's IVF index stays
exact, so with these defaults every size here is trained.

    .venv/bin/python bench/faiss_index.py --sizes 10000 100000 1000000 --queries 200
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

from service.search.index import INDEX_KINDS, IndexKind, VectorIndex

logger = logging.getLogger("bench.faiss_index")

DIM = 256


@dataclass(frozen=True)
class Row:
    n: int
    kind: str
    params: str
    build_s: float
    search_p50_ms: float
    search_p99_ms: float
    recall_at_10: float
    trained: bool


def clustered_gallery(
    n: int, per_identity: int, noise: float, rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """``n`` templates around ``ceil(n / per_identity)`` identity centres, and the centres."""
    identities = math.ceil(n / per_identity)
    centres = _unit(rng.standard_normal((identities, DIM), dtype=np.float32))
    out = np.empty((n, DIM), np.float32)
    chunk = 65536
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        owners = np.arange(start, stop) % identities
        out[start:stop] = _noisy(centres[owners], noise, rng)
    return out, centres


def _unit(x: NDArray[np.float32]) -> NDArray[np.float32]:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _noisy(
    centres: NDArray[np.float32], noise: float, rng: np.random.Generator
) -> NDArray[np.float32]:
    eps = _unit(rng.standard_normal(centres.shape, dtype=np.float32)) * noise
    return _unit(centres + eps)


def default_nlist(n: int) -> int:
    return int(2 ** round(math.log2(math.sqrt(n))))


def measure(
    kind: IndexKind,
    ids: NDArray[np.int64],
    vectors: NDArray[np.float32],
    queries: NDArray[np.float32],
    truth: NDArray[np.int64],
    *,
    nlist: int,
    nprobes: list[int],
    hnsw_m: int,
    ef_searches: list[int],
    search_threads: int = 0,
) -> list[Row]:
    """Build once, then time searches at each search setting (nprobe / efSearch sweep)."""
    index = VectorIndex(
        DIM,
        kind,
        use_gpu=False,
        nlist=nlist,
        nprobe=nprobes[0],
        hnsw_m=hnsw_m,
    )
    t0 = time.perf_counter()
    index.rebuild(ids, vectors)
    build_s = time.perf_counter() - t0
    build_threads = faiss.omp_get_max_threads()
    if search_threads:
        faiss.omp_set_num_threads(search_threads)
    settings: list[tuple[str, dict[str, int]]]
    if kind == "ivf":
        settings = [(f"nlist={nlist} nprobe={p}", {"nprobe": p}) for p in nprobes]
    elif kind == "hnsw":
        settings = [(f"M={hnsw_m} efSearch={e}", {"ef_search": e}) for e in ef_searches]
    else:
        settings = [("exact", {})]
    rows = []
    for label, params in settings:
        index.set_search_params(**params)
        index.search(queries[:5], 10)  # warm caches
        latencies = []
        found = np.empty((len(queries), 10), np.int64)
        for i in range(len(queries)):
            t = time.perf_counter()
            _, labels = index.search(queries[i : i + 1], 10)
            latencies.append((time.perf_counter() - t) * 1000.0)
            found[i] = labels[0]
        hits = sum(len(set(found[i]) & set(truth[i])) for i in range(len(queries)))
        rows.append(
            Row(
                n=len(ids),
                kind=kind,
                params=label,
                build_s=build_s,
                search_p50_ms=float(np.percentile(latencies, 50)),
                search_p99_ms=float(np.percentile(latencies, 99)),
                recall_at_10=hits / (10 * len(queries)),
                trained=index.trained,
            )
        )
    faiss.omp_set_num_threads(build_threads)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--kinds", nargs="+", choices=INDEX_KINDS, default=list(INDEX_KINDS))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--per-identity", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.75)
    parser.add_argument("--nlist", type=int, default=0, help="0 = power of two nearest sqrt(n)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[128, 256])
    parser.add_argument(
        "--search-threads",
        type=int,
        default=0,
        help="faiss OpenMP threads while timing searches (0 = faiss default); builds use all",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    rows: list[Row] = []
    search_threads = args.search_threads or faiss.omp_get_max_threads()
    print(
        f"faiss {faiss.__version__}: builds on {faiss.omp_get_max_threads()} OpenMP threads, "
        f"searches on {search_threads}"
    )
    print("| templates | kind | params | build s | search p50 ms | p99 ms | recall@10 |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for n in args.sizes:
        rng = np.random.default_rng(args.seed)
        t0 = time.perf_counter()
        vectors, centres = clustered_gallery(n, args.per_identity, args.noise, rng)
        owners = rng.integers(0, len(centres), size=args.queries)
        queries = _noisy(centres[owners], args.noise, rng)
        ids = np.arange(n, dtype=np.int64) * 3 + 1_000_000  # gappy, not positions
        exact = faiss.IndexFlatIP(DIM)
        exact.add(vectors)
        _, truth_pos = exact.search(queries, 10)
        truth = ids[truth_pos]
        del exact
        logger.info("n=%d: data and ground truth in %.1f s", n, time.perf_counter() - t0)
        nlist = args.nlist or default_nlist(n)
        for kind in args.kinds:
            nprobes = [min(p, nlist) for p in args.nprobe]
            for row in measure(
                kind,
                ids,
                vectors,
                queries,
                truth,
                nlist=nlist,
                nprobes=nprobes,
                hnsw_m=args.hnsw_m,
                ef_searches=args.ef_search,
                search_threads=args.search_threads,
            ):
                rows.append(row)
                note = "" if row.trained else " (untrained: exact)"
                print(
                    f"| {n:,} | {kind} | {row.params}{note} | {row.build_s:.1f} | "
                    f"{row.search_p50_ms:.3f} | {row.search_p99_ms:.3f} | {row.recall_at_10:.3f} |",
                    flush=True,
                )
            gc.collect()
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
