"""Where a training run reports its numbers: CSV files, TensorBoard, and a loss-curve PNG.

``metrics.csv`` holds one row per logged training iteration, ``eval.csv`` one row per
evaluation. On resume, rows past the checkpoint's iteration (written after the last checkpoint
by the interrupted run) are dropped first, so the files read as one uninterrupted run.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class CsvLog:
    """Append-only CSV of dict rows with an ``iteration`` column; columns fixed by the first row."""

    def __init__(self, path: Path, *, truncate_after: int | None) -> None:
        self.path = path
        self._fields: list[str] | None = None
        if path.is_file():
            if truncate_after is None:
                path.unlink()
            else:
                self._truncate(truncate_after)

    def _truncate(self, last_iteration: int) -> None:
        with self.path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = list(reader.fieldnames or [])
            rows = [r for r in reader if int(r["iteration"]) <= last_iteration]
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        self._fields = fields or None

    def append(self, row: dict[str, Any]) -> None:
        new = self._fields is None
        if self._fields is None:
            self._fields = list(row)
        unknown = set(row) - set(self._fields)
        if unknown:
            raise KeyError(
                f"{self.path.name}: columns {sorted(unknown)} not in header {self._fields}"
            )
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self._fields)
            if new:
                writer.writeheader()
            writer.writerow(row)


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a metrics CSV as floats (empty cells skipped)."""
    with path.open(newline="") as handle:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(handle)
        ]


class RunLog:
    """CSV + TensorBoard sink of one run (rank 0 only; other ranks pass ``enabled=False``)."""

    def __init__(self, out_dir: Path, *, enabled: bool, resume_from: int | None) -> None:
        self.enabled = enabled
        self.out_dir = out_dir
        self._writer: Any = None
        if not enabled:
            return
        self.train_csv = CsvLog(out_dir / "metrics.csv", truncate_after=resume_from)
        self.eval_csv = CsvLog(out_dir / "eval.csv", truncate_after=resume_from)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is in the train extra; keep training without it
            logger.warning("tensorboard is not installed; metrics go to CSV only")
        else:
            self._writer = SummaryWriter(
                log_dir=str(out_dir / "tensorboard"),
                purge_step=resume_from + 1 if resume_from else None,
            )

    def train(self, iteration: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.train_csv.append({"iteration": iteration, **values})
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(f"train/{key}", value, iteration)

    def eval(self, iteration: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.eval_csv.append({"iteration": iteration, **values})
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(f"eval/{key}", value, iteration)

    def plot(self) -> Path | None:
        """Redraw ``loss_curves.png`` from the CSVs (loss terms, lr, validation rank-1)."""
        if not self.enabled or not self.train_csv.path.is_file():
            return None
        return plot_loss_curves(
            self.out_dir / "metrics.csv",
            self.out_dir / "loss_curves.png",
            self.out_dir / "eval.csv",
        )

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def plot_loss_curves(metrics_csv: Path, png: Path, eval_csv: Path | None = None) -> Path:
    """Loss terms (log scale) and learning rate against iteration, plus eval rank-1 if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_csv(metrics_csv)
    evals = read_csv(eval_csv) if eval_csv is not None and eval_csv.is_file() else []
    panels = 3 if evals else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6))
    its = [r["iteration"] for r in rows]
    for key in sorted({k for r in rows for k in r if k.startswith("loss_")}):
        axes[0].plot(its, [r.get(key, float("nan")) for r in rows], label=key[5:], linewidth=1)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("iteration")
    axes[0].set_title("loss terms (unweighted)")
    axes[0].legend(fontsize=7)
    axes[1].plot(its, [r.get("lr", float("nan")) for r in rows], color="tab:gray")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("iteration")
    axes[1].set_title("learning rate")
    if evals:
        eits = [r["iteration"] for r in evals]
        for key in sorted({k for r in evals for k in r if k != "iteration"}):
            axes[2].plot(eits, [r.get(key, float("nan")) for r in evals], marker="o", label=key)
        axes[2].set_xlabel("iteration")
        axes[2].set_title("validation rank-1 (%)")
        axes[2].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
