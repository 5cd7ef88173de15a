"""Search at scale on galleries shaped like the shipped model's embeddings.

For each gallery size and index setting: build time, memory, single-query latency (p50/p99)
with 1 and 2 threads, recall@10 against exact search, and the cost of adding and removing one
template, all through :class:`service.search.index.VectorIndex` (what the service runs), except
``sq8`` (a scalar-quantised flat index, measured with FAISS directly: the service does not
offer it, see BENCHMARKS.md for why). ``auto`` is the service's default: the row shows what it
chose for the gallery's size, built as ``rebuild`` builds it.

Data: random unit vectors are a poor proxy for a gallery (in 256-d they are all nearly
orthogonal, so approximate search looks better or worse than it would on real templates).
Instead the gallery follows the real embeddings of ``--embeddings`` (``bench/real_embeddings.py``
writes them from the shipped model): their mean, their between-identity covariance (identity
means; Ledoit-Wolf shrunk, as 74 identities cannot estimate 256 dimensions alone) and their
within-identity covariance (each walk's offset from its identity's mean). A synthetic identity
is a centre drawn from the between-identity Gaussian; each of its templates is the centre plus a
within-identity draw, L2-normalised as the service stores it. Half the probes are fresh walks
of enrolled identities (a true match exists), half are walks of identities never enrolled. The
first table checks the synthetic scores against the real ones.

Each (size, index) runs in its own process so that its memory is measured alone (resident-set
growth over the build, vectors excluded).

    .venv/bin/python bench/faiss_index.py --embeddings ../runs/bench/real-embeddings.npz \
        --sizes 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

DIM = 256
K = 10


# ----------------------------------------------------------------------------- the gallery model
def ledoit_wolf(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Ledoit-Wolf shrunk covariance of the rows of ``x`` (already centred)."""
    n, d = x.shape
    s = x.T @ x / n
    mu = np.trace(s) / d
    d2 = float(np.sum((s - mu * np.eye(d)) ** 2))
    sq = np.sum(x**2, axis=1)
    # ||x x^T - S||_F^2 = |x|^4 - 2 x^T S x + ||S||_F^2, summed without forming d x d per row
    b2_bar = float(np.sum(sq**2 - 2 * np.einsum("ij,jk,ik->i", x, s, x) + np.sum(s**2))) / n**2
    shrink = min(b2_bar, d2) / d2 if d2 > 0 else 1.0
    return shrink * mu * np.eye(d) + (1 - shrink) * s


def _sqrt_psd(c: NDArray[np.float64]) -> NDArray[np.float32]:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0, None))).astype(np.float32)


@dataclass(frozen=True)
class GalleryModel:
    """Gaussian identities and templates fitted to real embeddings (module docstring)."""

    mean: NDArray[np.float32]
    between: NDArray[np.float32]  # B with B B^T = between-identity covariance
    within: NDArray[np.float32]  # W with W W^T = within-identity covariance

    @classmethod
    def fit(cls, embeddings: NDArray[np.float32], subjects: NDArray[np.str_]) -> GalleryModel:
        x = embeddings.astype(np.float64)
        names, owner = np.unique(subjects, return_inverse=True)
        centres = np.stack([x[owner == i].mean(axis=0) for i in range(len(names))])
        mean = centres.mean(axis=0)
        between = ledoit_wolf(centres - mean)
        residuals = x - centres[owner]
        within = residuals.T @ residuals / (len(x) - len(names))
        return cls(mean.astype(np.float32), _sqrt_psd(between), _sqrt_psd(within))

    def identities(self, n: int, rng: np.random.Generator) -> NDArray[np.float32]:
        z = rng.standard_normal((n, DIM), dtype=np.float32)
        return self.mean + z @ self.between.T

    def templates(
        self, centres: NDArray[np.float32], rng: np.random.Generator
    ) -> NDArray[np.float32]:
        out = np.empty_like(centres)
        for start in range(0, len(centres), 65536):
            c = centres[start : start + 65536]
            t = c + rng.standard_normal(c.shape, dtype=np.float32) @ self.within.T
            out[start : start + len(c)] = t / np.linalg.norm(t, axis=1, keepdims=True)
        return out


def load_real(path: Path) -> tuple[NDArray[np.float32], NDArray[np.str_]]:
    with np.load(path) as data:
        return data["embeddings"].astype(np.float32), data["subjects"]


def score_summary(vectors: NDArray[np.float32], owner: NDArray[np.int64]) -> dict[str, float]:
    """Same-identity / other-identity cosine (mean, sd) and rank-1 leave-one-out accuracy."""
    scores = vectors @ vectors.T
    same = owner[:, None] == owner[None, :]
    np.fill_diagonal(same, False)
    other = owner[:, None] != owner[None, :]
    gen, imp = scores[same], scores[other]
    np.fill_diagonal(scores, -np.inf)
    rank1 = float(np.mean(owner[np.argmax(scores, axis=1)] == owner))
    return {
        "genuine_mean": float(gen.mean()),
        "genuine_sd": float(gen.std()),
        "impostor_mean": float(imp.mean()),
        "impostor_sd": float(imp.std()),
        "rank1": rank1,
    }


def realism_table(
    model: GalleryModel, real: NDArray[np.float32], subjects: NDArray[np.str_]
) -> str:
    rng = np.random.default_rng(1)
    _, owner = np.unique(subjects, return_inverse=True)
    per = round(len(real) / owner.max())
    ids = int(owner.max()) + 1
    centres = model.identities(ids, rng)
    synth_owner = np.repeat(np.arange(ids), per)
    synth = model.templates(centres[synth_owner], rng)
    rows = [
        ("real walks", score_summary(real, owner)),
        ("synthetic", score_summary(synth, synth_owner)),
    ]
    lines = [
        f"| {len(real)} walks of {ids} identities | genuine cos | impostor cos "
        "| rank-1 (leave one out) |",
        "|---|---|---|---:|",
    ]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['genuine_mean']:.3f} ± {s['genuine_sd']:.3f} | "
            f"{s['impostor_mean']:.3f} ± {s['impostor_sd']:.3f} | {s['rank1']:.3f} |"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Workload:
    ids: NDArray[np.int64]
    vectors: NDArray[np.float32]
    queries: NDArray[np.float32]  # first half mated, second half not
    truth: NDArray[np.int64]  # exact top-K ids per query
    extra: NDArray[np.float32]  # templates to add one at a time


def workload(model: GalleryModel, n: int, per_identity: int, queries: int, seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    identities = math.ceil(n / per_identity)
    centres = model.identities(identities, rng)
    owners = np.arange(n) % identities
    vectors = model.templates(centres[owners], rng)
    mated = model.templates(centres[rng.integers(0, identities, queries // 2)], rng)
    strangers = model.templates(model.identities(queries - queries // 2, rng), rng)
    probes = np.concatenate([mated, strangers])
    ids = np.arange(n, dtype=np.int64) * 3 + 1_000_000  # gappy, not positions
    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    _, pos = exact.search(probes, K)
    extra = model.templates(model.identities(200, rng), rng)
    return Workload(ids, vectors, probes, ids[pos], extra)


# ---------------------------------------------------------------------------------- one setting
@dataclass
class Row:
    n: int
    kind: str
    build: str
    search: str
    build_s: float
    memory_mb: float
    p50_ms_1t: float
    p99_ms_1t: float
    p50_ms_2t: float
    p99_ms_2t: float
    recall_at_10: float
    recall_mated: float
    add_ms: float = float("nan")
    remove_ms: float = float("nan")
    notes: list[str] = field(default_factory=list)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _time_searches(
    search, queries: NDArray[np.float32], threads: int
) -> tuple[float, float, NDArray[np.int64]]:
    faiss.omp_set_num_threads(threads)
    search(queries[:5])  # warm
    found = np.empty((len(queries), K), np.int64)
    lat = []
    for i in range(len(queries)):
        t = time.perf_counter()
        found[i] = search(queries[i : i + 1])[0]
        lat.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), found


def recall_at_k(found: NDArray[np.int64], truth: NDArray[np.int64]) -> float:
    return sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=True)) / truth.size


def run_setting(job: dict) -> list[dict]:
    """Build one index (in this process alone), then time each of its search settings."""
    from gaitid.service.search.index import VectorIndex

    model = GalleryModel(**{k: np.asarray(v, np.float32) for k, v in job["model"].items()})
    w = workload(model, job["n"], job["per_identity"], job["queries"], job["seed"])
    kind, n = job["kind"], job["n"]
    faiss.omp_set_num_threads(2)
    before = _rss_bytes()
    t0 = time.perf_counter()
    if kind == "sq8":
        sq = faiss.IndexScalarQuantizer(
            DIM, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        sq.train(w.vectors[:100_000])
        index = faiss.IndexIDMap2(sq)
        index.add_with_ids(w.vectors, w.ids)
        build_s = time.perf_counter() - t0
        settings = [("exact scan of 8-bit codes", {})]

        def search(q: NDArray[np.float32]) -> NDArray[np.int64]:
            return index.search(q, K)[1]

        set_params = lambda **_: None  # noqa: E731
    else:
        index = VectorIndex(DIM, kind, use_gpu=False, **job["build_params"])
        index.rebuild(w.ids, w.vectors)
        build_s = time.perf_counter() - t0
        settings = job["search_settings"]
        if kind == "auto":  # what the service's default chose for this size
            chosen = index.ivf_params
            job["build_label"] = "exact" if chosen is None else f"nlist={chosen[0]}"
            settings = [("exact" if chosen is None else f"nprobe={chosen[1]}", {})]

        def search(q: NDArray[np.float32]) -> NDArray[np.int64]:
            return index.search(q, K)[1]

        set_params = index.set_search_params
    memory_mb = (_rss_bytes() - before) / 2**20
    rows = []
    half = len(w.queries) // 2
    for label, params in settings:
        set_params(**params)
        p50_1, p99_1, found = _time_searches(search, w.queries, 1)
        p50_2, p99_2, _ = _time_searches(search, w.queries, 2)
        rows.append(
            Row(
                n=n,
                kind=kind,
                build=job["build_label"],
                search=label,
                build_s=build_s,
                memory_mb=memory_mb,
                p50_ms_1t=p50_1,
                p99_ms_1t=p99_1,
                p50_ms_2t=p50_2,
                p99_ms_2t=p99_2,
                recall_at_10=recall_at_k(found, w.truth),
                recall_mated=recall_at_k(found[:half], w.truth[:half]),
            )
        )
    if kind != "sq8":  # the service's write path: one template at a time, 2 threads
        faiss.omp_set_num_threads(2)
        new_ids = np.arange(len(w.extra), dtype=np.int64) * 3 + 2  # disjoint from the gallery's
        t0 = time.perf_counter()
        for i in range(len(w.extra)):
            index.add(new_ids[i : i + 1], w.extra[i : i + 1])
        add_ms = (time.perf_counter() - t0) * 1e3 / len(w.extra)
        t0 = time.perf_counter()
        for i in range(len(w.extra)):
            index.remove(w.ids[i * 7 : i * 7 + 1])
        remove_ms = (time.perf_counter() - t0) * 1e3 / len(w.extra)
        for row in rows:
            row.add_ms, row.remove_ms = add_ms, remove_ms
    return [asdict(r) for r in rows]


# ------------------------------------------------------------------------------------ the sweep
def jobs_for(n: int, args: argparse.Namespace) -> list[dict]:
    jobs: list[dict] = []
    base = {"n": n, "per_identity": args.per_identity, "queries": args.queries, "seed": args.seed}
    for kind in args.kinds:
        if kind in ("flat", "sq8", "auto"):
            jobs.append(
                {
                    **base,
                    "kind": kind,
                    "build_label": "-",
                    "build_params": {},
                    "search_settings": [("exact", {})],
                }
            )
        elif kind == "ivf":
            for nlist in args.nlist or _default_nlists(n):
                if n < 39 * nlist:
                    continue  # the service would keep it exact (untrained)
                probes = [p for p in args.nprobe if p <= nlist]
                jobs.append(
                    {
                        **base,
                        "kind": kind,
                        "build_label": f"nlist={nlist}",
                        "build_params": {"nlist": nlist, "nprobe": probes[0]},
                        "search_settings": [(f"nprobe={p}", {"nprobe": p}) for p in probes],
                    }
                )
        elif kind == "hnsw":
            jobs.append(
                {
                    **base,
                    "kind": kind,
                    "build_label": f"M={args.hnsw_m}",
                    "build_params": {"hnsw_m": args.hnsw_m},
                    "search_settings": [
                        (f"efSearch={e}", {"ef_search": e}) for e in args.ef_search
                    ],
                }
            )
    return jobs


def _default_nlists(n: int) -> list[int]:
    """Powers of two around FAISS's guidance of 4..16 * sqrt(n) lists."""
    root = math.sqrt(n)
    return sorted({int(2 ** round(math.log2(f * root))) for f in (1, 4)})


def format_row(r: dict) -> str:
    return (
        f"| {r['n']:,} | {r['kind']} | {r['build']} | {r['search']} | {r['build_s']:.1f} | "
        f"{r['memory_mb']:.0f} | {r['p50_ms_1t']:.2f} / {r['p99_ms_1t']:.2f} | "
        f"{r['p50_ms_2t']:.2f} / {r['p99_ms_2t']:.2f} | {r['recall_at_10']:.4f} | "
        f"{r['recall_mated']:.4f} | {r['add_ms']:.3f} | {r['remove_ms']:.3f} |"
    )


HEADER = (
    "| templates | index | build | search | build s | memory MB | p50 / p99 ms, 1 thread | "
    "p50 / p99 ms, 2 threads | recall@10 | recall@10 mated | add ms | remove ms |\n"
    "|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--embeddings", type=Path, required=True, help="bench/real_embeddings.py output"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["flat", "sq8", "auto", "ivf", "hnsw"],
        choices=["flat", "sq8", "auto", "ivf", "hnsw"],
    )
    parser.add_argument("--queries", type=int, default=300, help="half mated, half not")
    parser.add_argument("--per-identity", type=int, default=5, help="templates per identity")
    parser.add_argument("--nlist", type=int, nargs="+", help="default: ~sqrt(n) and ~4 sqrt(n)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    real, subjects = load_real(args.embeddings)
    model = GalleryModel.fit(real, subjects)
    print(
        f"faiss {faiss.__version__}, {os.cpu_count()} CPUs; gallery model fitted to "
        f"{len(real)} real embeddings of {len(np.unique(subjects))} identities\n"
    )
    print(realism_table(model, real, subjects) + "\n", flush=True)
    print(HEADER, flush=True)
    shared = {k: v.tolist() for k, v in asdict(model).items()}
    rows: list[dict] = []
    context = multiprocessing.get_context("spawn")
    for n in args.sizes:
        for job in jobs_for(n, args):
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                for row in pool.submit(run_setting, {**job, "model": shared}).result():
                    rows.append(row)
                    print(format_row(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
