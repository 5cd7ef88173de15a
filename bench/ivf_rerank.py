"""Experiment toward the 1M goal: IVF over 8-bit codes, then exact re-ranking of the candidates.

Scanning 8-bit codes moves a quarter of the bytes of fp32 vectors; ranking by them loses
recall (``sq8`` in BENCHMARKS.md: 0.98), so the top ``10 x factor`` candidates are re-ranked by
their exact inner products (the vectors stay in RAM beside the codes). FAISS directly, not the
service's ``VectorIndex``: this measures whether the idea reaches recall@10 >= 0.99 under 5 ms
before the service takes it on. Same galleries and probes as ``bench/faiss_index.py``.

    .venv/bin/python bench/ivf_rerank.py --embeddings ../runs/bench/real-embeddings.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
from faiss_index import (  # bench/ is on sys.path
    DIM,
    GalleryModel,
    K,
    load_real,
    recall_at_k,
    workload,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embeddings", type=Path, required=True)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--nlist", type=int, default=4096)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[256, 384, 512])
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4, 10])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    real, subjects = load_real(args.embeddings)
    w = workload(GalleryModel.fit(real, subjects), args.size, 5, 300, 0)
    faiss.omp_set_num_threads(args.threads)
    quantizer = faiss.IndexFlatIP(DIM)
    ivf = faiss.IndexIVFScalarQuantizer(
        quantizer, DIM, args.nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    ivf.cp.max_points_per_centroid = 64
    start = time.perf_counter()
    ivf.train(w.vectors)
    ivf.add_with_ids(w.vectors, np.arange(len(w.ids), dtype=np.int64))  # ids = rows here
    print(
        f"{args.size:,} templates, nlist {args.nlist}: built in {time.perf_counter() - start:.0f} s"
    )
    ivf.parallel_mode = 1
    print("| nprobe | candidates re-ranked | p50 ms | p99 ms | recall@10 |")
    print("|---:|---:|---:|---:|---:|")
    for nprobe in args.nprobe:
        ivf.nprobe = nprobe
        for factor in args.factors:
            found = np.full((len(w.queries), K), -1, np.int64)
            latencies = []
            for i, query in enumerate(w.queries):
                start = time.perf_counter()
                _, rows = ivf.search(query[None], K * factor)
                rows = rows[0][rows[0] >= 0]
                if factor > 1:
                    rows = rows[np.argsort(-(w.vectors[rows] @ query))[:K]]
                latencies.append((time.perf_counter() - start) * 1e3)
                found[i, : len(rows[:K])] = w.ids[rows[:K]]
            print(
                f"| {nprobe} | {K * factor if factor > 1 else 'none'} | "
                f"{np.median(latencies):.2f} | {np.percentile(latencies, 99):.2f} | "
                f"{recall_at_k(found, w.truth):.4f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
