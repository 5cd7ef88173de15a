"""Can the 256-d head alone narrow the clip gap? Refits of a trained network's head, scored as
the service decides.

    .venv/bin/python bench/embedding_head_fits.py models/gaitid-lmgcs.pt \\
        --data data/casia-b --clip-walks ../runs/clip-walks/063-074 \\
        --train-clip-walks ../runs/clip-walks/train-001-062 --cache ../runs/head/cache --mirror

The head (``model/embedding_head.py``) is fitted in closed form after training (PCA + within-class
whitening, ``training.embedding_fit``), so other fits cost minutes, not a training run. The
network's part features are extracted once (cached): the training walks of ``--fit-subjects``
(middle 40 frames, as the trainer fits), their clip readings (``--train-clip-walks``, optional),
the held-out walks (every frame) and their clip readings (``--clip-walks``), and with
``--mirror`` every one of them mirrored left to right as well. Each head is scored on the
held-out subjects like ``gaitid eval`` and ``bench/clip_route.py`` score a model: rank-1 (CASIA-B
protocol), the FMR 1e-3 threshold and the FNMR at it, the EER and the FNMR at FMR 1e-2 (both
far less noisy than the 1e-3 point on 12 subjects), the rank-1 lost through clips, the genuine
acceptance of clean and clip probes at the threshold (the gap issue 25 measures), and the
cosine between a walk's two readings. Heads:

- the checkpoint's own;
- refits on 2,000 or every training walk, ridge ``r``, PCA to ``k`` > 256 directions (then the
  256 of largest variance after whitening);
- with the clip readings as more walks of their subjects, and with the difference between a
  walk's clean and clip reading added to the within-class scatter at weight ``lambda`` (the
  route's noise shrunk like a bag or a coat);
- ``--mirror``: every walk embedded as the mean of its own and its mirror image's features.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from numpy.typing import NDArray

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from gaitid.distance import l2_normalize  # noqa: E402
from gaitid.training.evaluation.open_set import (  # noqa: E402
    det_curve,
    equal_error_rate,
    fmr_fnmr,
    threshold_at_fmr,
    verification_scores,
)
from gaitid.training.evaluation.protocols import (  # noqa: E402
    CASIA_B,
    CASIA_B_GALLERY,
    CASIA_B_PROBES,
    FeatureSet,
    evaluate_cross_view,
)

app = typer.Typer(add_completion=False)


@dataclass(frozen=True)
class Walks:
    """Part-normalised, concatenated part features (the head's input) of keyed walks."""

    subjects: NDArray[np.str_]
    conditions: NDArray[np.str_]
    views: NDArray[np.str_]
    flat: NDArray[np.float32]

    def keyed(self) -> list[tuple[str, str, str]]:
        keys = zip(
            self.subjects.tolist(), self.conditions.tolist(), self.views.tolist(), strict=True
        )
        return list(keys)

    def rows(self, chosen: NDArray[np.intp]) -> Walks:
        return Walks(
            self.subjects[chosen], self.conditions[chosen], self.views[chosen], self.flat[chosen]
        )


def extract(
    root: Path,
    subjects: Sequence[str] | None,
    *,
    checkpoint: Path,
    frames: int | None,
    mirror: bool,
    cache: Path,
    name: str,
    keep: Callable[[Any], bool] | None = None,
    chosen: NDArray[np.intp] | None = None,
) -> Walks:
    """The head's input for every walk of ``root`` (or the ``chosen`` ones, by sorted key),
    cached as ``cache/name.npz``."""
    path = cache / f"{name}.npz"
    if path.is_file():
        z = np.load(path)
        return Walks(z["subjects"], z["conditions"], z["views"], z["flat"])
    import torch

    from gaitid.model.export import load_checkpoint_model
    from gaitid.training.embedding_fit import middle_window
    from gaitid.training.evaluation.extract import load_eval_walks, torch_features

    model, _ = load_checkpoint_model(checkpoint)
    keys, walks = load_eval_walks(root, subjects, keep)
    if chosen is not None:
        keys, walks = [keys[i] for i in chosen], [walks[i] for i in chosen]
    walks = [middle_window(w, frames) for w in walks]
    if mirror:
        walks = [np.ascontiguousarray(w[:, :, ::-1]) for w in walks]
    _, parts = torch_features(model, walks, device=torch.device("cpu"))
    flat = model.embedding_head.flatten_parts(torch.from_numpy(parts)).numpy()
    out = Walks(
        np.array([k.subject for k in keys]),
        np.array([k.condition for k in keys]),
        np.array([k.view for k in keys]),
        flat.astype(np.float32),
    )
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, subjects=out.subjects, conditions=out.conditions, views=out.views, flat=out.flat)
    print(f"# {name}: {len(keys)} walks", flush=True)
    return out


def whitening(
    projected: NDArray[np.float64],
    labels: NDArray[np.int64],
    *,
    ridge: float,
    pairs: NDArray[np.intp] | None = None,
    pair_weight: float = 0.0,
    out_dim: int = 256,
) -> NDArray[np.float64]:
    """``[k, out_dim]``: within-class whitening of PCA-projected walks
    (``training.embedding_fit.within_class_whitening``, the shipped rule), with ``pair_weight`` x
    the scatter of the differences between paired rows (two readings of one walk) added to the
    within-class scatter, then, when k > out_dim, the ``out_dim`` directions of largest variance
    after whitening."""
    from gaitid.training.embedding_fit import within_class_whitening

    k = projected.shape[1]
    extra = None
    if pairs is not None and pair_weight > 0 and len(pairs):
        differences = projected[pairs[:, 0]] - projected[pairs[:, 1]]
        extra = pair_weight * differences.T @ differences / (2 * len(differences))
    white = within_class_whitening(projected, labels, regularization=ridge, extra_scatter=extra)
    if k > out_dim:
        whitened = projected @ white
        _, directions = np.linalg.eigh(whitened.T @ whitened)
        white = white @ directions[:, ::-1][:, :out_dim]
    return white


def score(
    embed: Callable[[Walks], NDArray[np.float32]], clean: Walks, clip: Walks
) -> dict[str, float]:
    """The service's decision on held-out walks: clean, and the probes the clip route read."""

    def features(walks: Walks, emb: NDArray[np.float32]) -> FeatureSet:
        return FeatureSet(walks.subjects, walks.conditions, walks.views, emb)

    clean_emb, clip_emb = embed(clean), embed(clip)
    every = features(clean, clean_emb)
    ranks = evaluate_cross_view(every, CASIA_B, "embedding").mean
    sets = verification_scores(every)["identity"]
    threshold = threshold_at_fmr(sets.impostor, 1e-3)
    out = {f"rank1_{s}": ranks[s] for s in CASIA_B_PROBES}
    out["threshold"] = threshold
    out["fnmr"] = fmr_fnmr(sets, threshold)[1]
    out["eer"] = equal_error_rate(*det_curve(sets)[:2])
    out["fnmr_1e-2"] = fmr_fnmr(sets, threshold_at_fmr(sets.impostor, 1e-2))[1]
    gallery = np.isin(clean.conditions, CASIA_B_GALLERY)
    read = set(clip.keyed())
    twins = np.array([key in read for key in clean.keyed()])
    routes = {
        "clean": clean.rows(np.flatnonzero(gallery | twins)),
        "clip": Walks(
            np.r_[clean.subjects[gallery], clip.subjects],
            np.r_[clean.conditions[gallery], clip.conditions],
            np.r_[clean.views[gallery], clip.views],
            np.r_[clean.flat[gallery], clip.flat],
        ),
    }
    for route, walks in routes.items():
        routed = features(walks, embed(walks))
        route_ranks = evaluate_cross_view(routed, CASIA_B, "embedding").mean
        out[f"rank1_mean_{route}"] = float(np.mean([route_ranks[s] for s in CASIA_B_PROBES]))
        accepted = []
        for conditions in CASIA_B_PROBES.values():
            chosen = np.isin(routed.conditions, (*CASIA_B_GALLERY, *conditions))
            if np.isin(routed.conditions[chosen], conditions).any():
                scores = verification_scores(routed.subset(chosen))["identity"]
                accepted.append(100.0 * (1 - fmr_fnmr(scores, threshold)[1]))
        out[f"accepted_{route}"] = float(np.mean(accepted))
    index = {key: i for i, key in enumerate(clean.keyed())}
    pairs = [(index[key], i) for i, key in enumerate(clip.keyed())]
    out["cosine"] = float(np.mean([clean_emb[a] @ clip_emb[b] for a, b in pairs]))
    return out


def _row(name: str, r: dict[str, float]) -> str:
    loss = r["rank1_mean_clean"] - r["rank1_mean_clip"]
    gap = r["accepted_clean"] - r["accepted_clip"]
    return (
        f"| {name} | {r['rank1_NM']:.2f} / {r['rank1_BG']:.2f} / {r['rank1_CL']:.2f} "
        f"| {r['threshold']:.4f} | {100 * r['fnmr']:.1f} | {100 * r['eer']:.2f} "
        f"| {100 * r['fnmr_1e-2']:.1f} | {loss:.2f} | {r['accepted_clean']:.1f} -> "
        f"{r['accepted_clip']:.1f} ({gap:.1f}) | {r['cosine']:.3f} |"
    )


@app.command()
def main(
    checkpoint: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    data: Annotated[Path, typer.Option(exists=True, file_okay=False)],
    clip_walks: Annotated[Path, typer.Option(exists=True, file_okay=False)],
    cache: Annotated[Path, typer.Option()],
    train_clip_walks: Annotated[Path | None, typer.Option(exists=True, file_okay=False)] = None,
    fit_subjects: Annotated[str, typer.Option()] = "001-062",
    val_subjects: Annotated[str, typer.Option()] = "063-074",
    mirror: Annotated[bool, typer.Option()] = False,
) -> None:
    from gaitid.model.export import load_checkpoint_model
    from gaitid.training.data.opengait import parse_subject_spec
    from gaitid.training.embedding_fit import principal_directions

    fit_ids, val_ids = parse_subject_spec(fit_subjects), parse_subject_spec(val_subjects)

    def probes_only(key: Any) -> bool:
        return key.condition not in CASIA_B_GALLERY

    common: dict[str, Any] = {"checkpoint": checkpoint, "cache": cache}
    clean = extract(data, val_ids, frames=None, mirror=False, name="val", **common)
    clip = extract(
        clip_walks, val_ids, frames=None, mirror=False, name="val-clip", keep=probes_only, **common
    )
    fit = extract(data, fit_ids, frames=40, mirror=False, name="fit", **common)
    fit_clip = None
    if train_clip_walks is not None:
        read = sorted(p.name for p in train_clip_walks.iterdir() if p.is_dir())
        fit_clip = extract(
            train_clip_walks,
            [s for s in read if s in set(fit_ids)],
            frames=40,
            mirror=False,
            name="fit-clip",
            **common,
        )
    names = sorted(set(fit.subjects.tolist()))
    sample = np.sort(np.random.default_rng(0).choice(len(fit.subjects), 2000, replace=False))

    def fitted(
        pool: NDArray[np.float32],
        labels: NDArray[np.int64],
        *,
        ridge: float = 1.0,
        k: int = 256,
        pairs: NDArray[np.intp] | None = None,
        pair_weight: float = 0.0,
    ) -> Callable[[Walks], NDArray[np.float32]]:
        mean = pool.mean(axis=0)
        directions, _, _ = principal_directions(pool - mean, k)
        projected = ((pool - mean) @ directions.astype(np.float32)).astype(np.float64)
        white = whitening(projected, labels, ridge=ridge, pairs=pairs, pair_weight=pair_weight)
        weight = (directions @ white).astype(np.float32)
        return lambda w: l2_normalize((w.flat - mean) @ weight)

    labels = np.array([names.index(s) for s in fit.subjects])
    network, _ = load_checkpoint_model(checkpoint)  # the one checkpoint loader
    own_w = network.embedding_head.weight.numpy()
    own_mu = network.embedding_head.mean.numpy()
    print(
        "\n| head | rank-1 NM / BG / CL | threshold | FNMR % | EER % | FNMR % at FMR 1e-2 "
        "| clip loss | accepted clean -> clip (gap) | cosine clean vs clip |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|---:|")
    rows: list[tuple[str, Callable[[Walks], NDArray[np.float32]]]] = [
        ("the checkpoint's own", lambda w: l2_normalize((w.flat - own_mu) @ own_w)),
        ("2,000 clean walks, r 1", fitted(fit.flat[sample], labels[sample])),
        ("every clean walk, r 1", fitted(fit.flat, labels)),
        ("every clean walk, r 0.5", fitted(fit.flat, labels, ridge=0.5)),
        ("every clean walk, r 2", fitted(fit.flat, labels, ridge=2.0)),
        ("every clean walk, PCA 512", fitted(fit.flat, labels, k=512)),
        ("every clean walk, PCA 1024", fitted(fit.flat, labels, k=1024)),
    ]
    if fit_clip is not None:
        pool = np.r_[fit.flat, fit_clip.flat]
        pool_labels = np.r_[labels, [names.index(s) for s in fit_clip.subjects]]
        index = {key: i for i, key in enumerate(fit.keyed())}
        pairs = np.array(
            [(index[key], len(fit.subjects) + i) for i, key in enumerate(fit_clip.keyed())]
        )
        for weight in (0.0, 1.0, 3.0, 10.0):
            rows.append(
                (
                    f"+ {len(pairs)} clip readings, lambda {weight:g}",
                    fitted(pool, pool_labels, pairs=pairs, pair_weight=weight),
                )
            )
    for name, embed in rows:
        print(_row(name, score(embed, clean, clip)), flush=True)
    if mirror:  # the mirror images of the held-out walks and of the 2,000 fit walks

        def averaged(own: Walks, flipped: Walks) -> Walks:
            mean = ((own.flat + flipped.flat) / 2).astype(np.float32)
            return Walks(own.subjects, own.conditions, own.views, mean)

        m_clean = extract(data, val_ids, frames=None, mirror=True, name="val-mirror", **common)
        m_clip = extract(
            clip_walks,
            val_ids,
            frames=None,
            mirror=True,
            name="val-clip-mirror",
            keep=probes_only,
            **common,
        )
        m_fit = extract(
            data, fit_ids, frames=40, mirror=True, name="fit-mirror-2000", chosen=sample, **common
        )
        pooled = averaged(fit.rows(sample), m_fit)
        embed = fitted(pooled.flat, labels[sample])
        result = score(embed, averaged(clean, m_clean), averaged(clip, m_clip))
        print(_row("2,000 clean walks, own + mirror image averaged", result), flush=True)


if __name__ == "__main__":
    app()
