"""GEI + nearest-neighbour rank-1 (CASIA-B protocol) on synthetic walkers and on real CASIA-B.

    .venv/bin/python bench/gei_baseline.py synth --subjects 20 --seed 0
    .venv/bin/python bench/gei_baseline.py casia --subjects 063-074

``synth`` generates the dataset into a temporary folder (timing ``gaitid synth``'s work on
one process unless ``--workers``), then runs the baseline. ``casia`` copies the chosen
subjects' npz files from ``../shared/data/casia-b-train``, expands them to the OpenGait layout
with ``../shared/tools/casiab_expand.py`` and reads them back through the project's reader,
so the figure also exercises the real-data path. Nothing is left on disk.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from numpy.typing import NDArray

from gaitid.training.data.opengait import WalkKey

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"

app = typer.Typer(add_completion=False, no_args_is_help=True)


def _print_table(title: str, walks: Mapping[WalkKey, NDArray[np.uint8]]) -> None:
    from gaitid.training.baselines.gei import gei_baseline

    started = time.perf_counter()
    table = gei_baseline(walks)
    elapsed = time.perf_counter() - started
    typer.echo(
        f"{title}: {len({k.subject for k in walks})} subjects, {len(walks)} walks "
        f"(baseline {elapsed:.1f} s)"
    )
    typer.echo(
        f"{'probe':<6}{'cross-view':>11}{'same-view':>11}  per probe view " + " ".join(table.views)
    )
    for group in table.accuracy:
        per_view = " ".join(f"{v:5.1f}" for v in table.per_probe_view(group))
        typer.echo(
            f"{group:<6}{table.cross_view(group):11.1f}{table.same_view(group):11.1f}  {per_view}"
        )


@app.command()
def synth(
    subjects: Annotated[int, typer.Option(min=2)] = 20,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    workers: Annotated[int, typer.Option(min=1)] = 1,
) -> None:
    """Generate ``subjects`` synthetic identities (11 views x 10 walks) and run the baseline."""
    from gaitid.training.data.opengait import load_dataset
    from gaitid.training.synth.dataset import SynthConfig, generate_dataset

    with tempfile.TemporaryDirectory(prefix="gei-synth-") as tmp:
        started = time.perf_counter()
        report = generate_dataset(
            SynthConfig(subjects=subjects, seed=seed), Path(tmp), workers=workers
        )
        elapsed = time.perf_counter() - started
        typer.echo(
            f"generated {report.walks} walks, {report.frames} frames in {elapsed:.1f} s "
            f"({1000 * elapsed / max(report.frames, 1):.2f} ms/frame, {workers} worker(s))"
        )
        _print_table(f"synthetic seed {seed}", load_dataset(Path(tmp)))


@app.command()
def casia(
    subjects: Annotated[str, typer.Option(help="Subject ids, e.g. 063-074.")] = "063-074",
    data: Annotated[Path, typer.Option()] = SHARED / "data" / "casia-b-train",
) -> None:
    """Expand real CASIA-B subjects to the OpenGait layout, read them back, run the baseline."""
    from gaitid.training.data.opengait import load_dataset, parse_subject_spec

    ids = parse_subject_spec(subjects)
    missing = [s for s in ids if not (data / f"{s}.npz").is_file()]
    if missing:
        raise typer.BadParameter(f"no npz for subjects {missing} in {data}")
    with tempfile.TemporaryDirectory(prefix="gei-casia-") as tmp:
        source, expanded = Path(tmp) / "npz", Path(tmp) / "opengait"
        source.mkdir()
        for subject in ids:
            shutil.copy(data / f"{subject}.npz", source / f"{subject}.npz")
        subprocess.run(
            [
                sys.executable,
                str(SHARED / "tools" / "casiab_expand.py"),
                str(source),
                str(expanded),
            ],
            check=True,
            capture_output=True,
        )
        _print_table(f"real CASIA-B {subjects}", load_dataset(expanded))


if __name__ == "__main__":
    app()
