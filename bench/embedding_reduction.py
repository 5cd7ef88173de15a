"""How to make the 256-d service embedding: reductions of a trained network's part features.

    .venv/bin/python bench/embedding_reduction.py runs/casia-b-lite-cpu/checkpoints/last.pt \\
        --data data/casia-b --fit-subjects 001-062 --val-subjects 063-074 --fit-walks 4000

Extracts the part features ``[P, D]`` of a seeded sample of training walks (the fit set) and of
every validation walk (all frames), then prints the CASIA-B cross-view rank-1 (NM / BG / CL,
identical views excluded) of:

- the paper's part-wise Euclidean distance (the reference the embedding must match);
- cosine of the full concatenation, raw and part-normalised (no reduction: the ceiling of a
  linear map that only reduces);
- PCA to 256 of the part-normalised concatenation (centred, plain and whitened);
- PCA to 256 + within-class whitening with ridge r (``training.embedding_fit``, the design);
- the checkpoint's own ``embedding`` output (whatever its head holds).

Features can be cached (``--cache DIR``) so the reductions can be re-scored without the network.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from numpy.typing import NDArray

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from gaitid.distance import l2_normalize  # noqa: E402
from gaitid.training.evaluation.protocols import CASIA_B, FeatureSet, evaluate_cross_view  # noqa: E402

app = typer.Typer(add_completion=False)


def _features(
    checkpoint: Path,
    data: Path,
    subjects: list[str],
    *,
    sample: int | None,
    seed: int,
    cache: Path | None,
) -> FeatureSet:
    name = f"{subjects[0]}-{subjects[-1]}-{sample or 'all'}-{seed}.npz"
    if cache is not None and (cache / name).is_file():
        z = np.load(cache / name)
        return FeatureSet(z["subjects"], z["conditions"], z["views"], z["emb"], z["parts"])
    from gaitid.training.evaluation.extract import features_from_file, load_eval_walks

    started = time.perf_counter()
    keys, walks = load_eval_walks(data, subjects)
    if sample is not None and sample < len(keys):
        chosen = np.sort(np.random.default_rng(seed).choice(len(keys), sample, replace=False))
        keys, walks = [keys[i] for i in chosen], [walks[i] for i in chosen]
    features, _ = features_from_file(checkpoint, keys, walks)
    print(
        f"# features of {len(keys)} walks ({subjects[0]}..{subjects[-1]}) in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(
            cache / name,
            subjects=features.subjects,
            conditions=features.conditions,
            views=features.views,
            emb=features.embeddings,
            parts=features.part_features,
        )
    return features


def _row(name: str, val: FeatureSet, vectors: NDArray[np.floating] | None = None) -> None:
    if vectors is None:
        result = evaluate_cross_view(val, CASIA_B, "part")
    else:
        scored = FeatureSet(val.subjects, val.conditions, val.views, l2_normalize(vectors), None)
        result = evaluate_cross_view(scored, CASIA_B, "embedding")
    m = result.mean
    print(f"| {name} | {m['NM']:.1f} | {m['BG']:.1f} | {m['CL']:.1f} |", flush=True)


@app.command()
def main(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    data: Annotated[Path, typer.Option(exists=True, file_okay=False)],
    fit_subjects: Annotated[str, typer.Option()] = "001-062",
    val_subjects: Annotated[str, typer.Option()] = "063-074",
    fit_walks: Annotated[int, typer.Option(min=3)] = 4000,
    seed: Annotated[int, typer.Option()] = 0,
    regularization: Annotated[list[float] | None, typer.Option()] = None,
    cache: Annotated[Path | None, typer.Option()] = None,
) -> None:
    from gaitid.training.data.opengait import parse_subject_spec
    from gaitid.training.embedding_fit import fit_reduction, principal_directions

    fit = _features(
        checkpoint,
        data,
        parse_subject_spec(fit_subjects),
        sample=fit_walks,
        seed=seed,
        cache=cache,
    )
    val = _features(
        checkpoint, data, parse_subject_spec(val_subjects), sample=None, seed=seed, cache=cache
    )
    assert fit.part_features is not None and val.part_features is not None
    names = sorted(set(fit.subjects.tolist()))
    labels = np.array([names.index(s) for s in fit.subjects])
    normed_fit = l2_normalize(fit.part_features).reshape(len(labels), -1)
    normed_val = l2_normalize(val.part_features).reshape(len(val.subjects), -1)
    dim = val.embeddings.shape[1]

    print(f"\n| distance ({len(labels)} fit walks of {len(names)} subjects) | NM | BG | CL |")
    print("|---|---:|---:|---:|")
    _row("part-wise Euclidean (paper)", val)
    _row(
        "cosine, raw concatenation (no reduction)",
        val,
        val.part_features.reshape(len(val.subjects), -1),
    )
    _row("cosine, part-normalised concatenation (no reduction)", val, normed_val)
    mean = normed_fit.mean(0)
    basis, variances, _ = principal_directions(normed_fit - mean, dim)
    projected = (normed_val - mean) @ basis
    _row(f"PCA-{dim}", val, projected)
    _row(f"PCA-{dim}, whitened", val, projected / np.sqrt(variances))
    for r in regularization or [0.3, 1.0, 3.0]:
        reduction = fit_reduction(normed_fit, labels, out_dim=dim, regularization=r)
        _row(
            f"PCA-{dim} + within-class whitening, r = {r:g}",
            val,
            (normed_val - reduction.mean) @ reduction.weight,
        )
    _row("the checkpoint's own embedding output", val, val.embeddings)


if __name__ == "__main__":
    app()
