"""Write evaluation results as a markdown table, JSON, and heatmap PNGs.

The markdown mirrors the paper's Tables III-V: one row per probe set, one column per probe view
(the mean over the other gallery views), then the mean; the full probe view x gallery view
matrices follow, and the heatmaps draw the same matrices. JSON keeps everything, with NaN
(an empty cell, e.g. a view missing from the data) written as ``null``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from gaitid.training.evaluation.gallery_size import REPORTED_GALLERY
from gaitid.training.evaluation.protocols import CrossViewResult, RetrievalResult

Result = CrossViewResult | RetrievalResult

_DISTANCE_TITLES = {
    "part": "part-wise Euclidean (paper)",
    "embedding": "256-d embedding, cosine (service)",
}


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def _title(result: CrossViewResult) -> str:
    scope = ", probes without a gallery walk left out" if result.exclude_unmatched else ""
    return f"{result.protocol}, {_DISTANCE_TITLES[result.distance]}{scope}"


def cross_view_markdown(result: CrossViewResult, *, full_tables: bool = True) -> str:
    """Per-view rank-1 table (percent, identical views excluded) and optional full matrices."""
    views = list(result.views)
    lines = [
        f"### Rank-1 (%), {_title(result)}",
        "",
        "| Probe | " + " | ".join(views) + " | Mean |",
        "|---|" + "---:|" * (len(views) + 1),
    ]
    for probe_set, per_view in result.per_view.items():
        cells = " | ".join(_fmt(v) for v in per_view)
        lines.append(f"| {probe_set} | {cells} | {_fmt(result.mean[probe_set])} |")
    lines.append("")
    counts = ", ".join(f"{k}: {v}" for k, v in result.num_probes.items())
    lines.append(f"Gallery walks: {result.num_gallery}; probe walks: {counts}.")
    if result.larger_gallery:
        figures = ", ".join(f"{k} {_fmt(v)}" for k, v in result.larger_gallery.items())
        lines += [
            "",
            f"Extrapolated to a {REPORTED_GALLERY}-subject gallery (beta-binomial on this "
            f"gallery's impostor counts, `training/evaluation/gallery_size.py`; leans "
            f"optimistic): {figures}.",
        ]
    if full_tables:
        for probe_set, table in result.tables.items():
            lines += [
                "",
                f"#### {probe_set}: probe view (rows) x gallery view (columns)",
                "",
                "| Probe \\ Gallery | " + " | ".join(views) + " |",
                "|---|" + "---:|" * len(views),
            ]
            for view, row in zip(views, table, strict=True):
                lines.append(f"| {view} | " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def retrieval_markdown(results: list[RetrievalResult]) -> str:
    """One row per distance: R@1/5/10, mAP, mINP (percent) and probe counts."""
    lines = [
        "### Retrieval (%)",
        "",
        "| Distance | R@1 | R@5 | R@10 | mAP | mINP | probes (with a match) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        m = r.metrics
        lines.append(
            f"| {_DISTANCE_TITLES[r.distance]} | {_fmt(m['R@1'])} | {_fmt(m['R@5'])} | "
            f"{_fmt(m['R@10'])} | {_fmt(m['mAP'])} | {_fmt(m['mINP'])} | "
            f"{m['num_probes']} ({m['num_valid_probes']}) |"
        )
    return "\n".join(lines) + "\n"


def to_markdown(results: list[Result], *, header: str = "", full_tables: bool = True) -> str:
    parts = [header] if header else []
    parts += [
        cross_view_markdown(r, full_tables=full_tables)
        for r in results
        if isinstance(r, CrossViewResult)
    ]
    retrieval = [r for r in results if isinstance(r, RetrievalResult)]
    if retrieval:
        parts.append(retrieval_markdown(retrieval))
    return "\n".join(parts)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


def to_json(results: list[Result], meta: dict[str, Any]) -> dict[str, Any]:
    """A JSON-ready dict of every result plus ``meta`` (model, data, command)."""
    items: list[dict[str, Any]] = []
    for r in results:
        if isinstance(r, CrossViewResult):
            items.append(
                {
                    "kind": "cross_view",
                    "protocol": r.protocol,
                    "distance": r.distance,
                    "exclude_unmatched": r.exclude_unmatched,
                    "views": list(r.views),
                    "mean": r.mean,
                    "per_view": r.per_view,
                    "tables": r.tables,
                    "num_probes": r.num_probes,
                    "num_gallery": r.num_gallery,
                    "larger_gallery": (
                        {"subjects": REPORTED_GALLERY, "rank1": r.larger_gallery}
                        if r.larger_gallery
                        else None
                    ),
                }
            )
        else:
            items.append({"kind": "retrieval", "distance": r.distance, "metrics": r.metrics})
    return _jsonable({"meta": meta, "results": items})


def save_heatmap(result: CrossViewResult, path: Path) -> Path:
    """One panel per probe set: rank-1 by probe view (rows) x gallery view (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(result.tables)
    size = 0.45 * len(result.views) + 1.5
    fig, axes = plt.subplots(1, len(sets), figsize=(size * len(sets), size), squeeze=False)
    for ax, probe_set in zip(axes[0], sets, strict=True):
        table = result.tables[probe_set]
        image = ax.imshow(np.ma.masked_invalid(table), vmin=0, vmax=100, cmap="viridis")
        ax.set_xticks(range(len(result.views)), result.views, rotation=90, fontsize=7)
        ax.set_yticks(range(len(result.views)), result.views, fontsize=7)
        ax.set_xlabel("gallery view")
        ax.set_ylabel("probe view")
        ax.set_title(f"{probe_set}: mean {_fmt(result.mean[probe_set])}%", fontsize=9)
        for (i, j), value in np.ndenumerate(table):
            if not math.isnan(value):
                color = "white" if value < 60 else "black"
                ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=5, color=color)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"Rank-1 (%), {_title(result)}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(results: list[Result], out_dir: Path, meta: dict[str, Any]) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and one heatmap per cross-view result."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = (
        f"## Evaluation: {meta.get('protocol', '')} on {meta.get('data', '')}\n\n"
        f"Model: `{meta.get('model', '')}`\n"
    )
    written = {"markdown": out_dir / "report.md", "json": out_dir / "report.json"}
    written["markdown"].write_text(to_markdown(results, header=header))
    written["json"].write_text(json.dumps(to_json(results, meta), indent=2) + "\n")
    for r in results:
        if isinstance(r, CrossViewResult):
            suffix = "-matched" if r.exclude_unmatched else ""
            name = f"heatmap-{r.distance}{suffix}"
            written[name] = save_heatmap(r, out_dir / f"{name}.png")
    return written
