"""Training-side subcommands of ``gaitid``: synthetic data, pretreatment, baselines, training.

Registration is cheap: each command imports numpy, OpenCV (and later torch) inside its
body, so ``gaitid --help`` and ``gaitid serve`` never load them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

logger = logging.getLogger(__name__)

#: Exit code for unusable input data (the core CLI uses the same for bad sequences).
EXIT_BAD_DATA = 2


def register(app: typer.Typer) -> None:
    """Add the training-side commands to ``app``."""
    app.command("synth")(synth)
    app.command("pretreat")(pretreat)
    app.command("gei-baseline")(gei_baseline)
    app.command("clip-walks")(clip_walks)
    from gaitid.training.train_commands import (  # cheap: no torch at import
        average_command,
        ensemble_command,
        eval_command,
        fit_embedding_command,
        train_command,
    )

    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("fit-embedding")(fit_embedding_command)
    app.command("average")(average_command)
    app.command("ensemble")(ensemble_command)


def _fail(message: str) -> typer.Exit:
    """Print ``message`` to stderr and return the exit to raise (code 2: bad data)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_DATA)


def synth(
    subjects: Annotated[int, typer.Option(min=1, help="Number of identities (001, 002, ...).")],
    out: Annotated[Path, typer.Option(help="Dataset root to write (OpenGait layout).")],
    seed: Annotated[int, typer.Option(min=0, help="Seed; same seed, same dataset.")] = 0,
    views: Annotated[
        str | None,
        typer.Option(help="Comma-separated view angles in degrees (default: 0,18,...,180)."),
    ] = None,
    conditions: Annotated[
        str | None,
        typer.Option(help="Comma-separated walks (default: nm-01..06,bg-01..02,cl-01..02)."),
    ] = None,
    raw: Annotated[
        Path | None,
        typer.Option(help="Also write the camera frames as PNGs in the raw layout under RAW."),
    ] = None,
    min_frames: Annotated[int, typer.Option(min=1, help="Shortest walk, frames.")] = 40,
    max_frames: Annotated[int, typer.Option(min=1, help="Longest walk, frames.")] = 110,
    workers: Annotated[int, typer.Option(min=1, help="Processes rendering walks.")] = 1,
) -> None:
    """Write a CASIA-B-like synthetic dataset: 11 views x nm/bg/cl walks per identity."""
    from pydantic import ValidationError
    from tqdm import tqdm

    from gaitid.training.synth.dataset import SynthConfig, generate_dataset

    settings: dict[str, object] = {
        "subjects": subjects,
        "seed": seed,
        "min_frames": min_frames,
        "max_frames": max_frames,
    }
    if views is not None:
        try:
            settings["views"] = tuple(int(v) for v in views.split(",") if v.strip())
        except ValueError as exc:
            raise typer.BadParameter(f"views must be integers in degrees: {views!r}") from exc
    if conditions is not None:
        settings["conditions"] = tuple(c.strip() for c in conditions.split(",") if c.strip())
    try:
        config = SynthConfig.model_validate(settings)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
    total = config.subjects * len(config.views) * len(config.conditions)
    with tqdm(total=total, unit="walk", desc="synth") as bar:
        report = generate_dataset(config, out, raw_root=raw, workers=workers, on_walk=bar.update)
    typer.echo(
        f"wrote {report.walks} walks ({report.frames} frames, {report.dropped} dropped) "
        f"to {out}; partition {report.partition}"
    )


def pretreat(
    raw_root: Annotated[Path, typer.Argument(help="Raw layout: <subject>/<cond>/<view>/*.png.")],
    out_root: Annotated[Path, typer.Argument(help="Where to write the OpenGait layout.")],
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    min_frames: Annotated[
        int, typer.Option(min=1, help="Skip walks with fewer usable frames than this.")
    ] = 1,
) -> None:
    """Pretreat raw silhouette folders into the OpenGait layout (64x64 uint8 pickles)."""
    from tqdm import tqdm

    from gaitid.training.data.casia_raw import iter_raw_walks
    from gaitid.training.data.errors import DatasetError
    from gaitid.training.data.pretreat import pretreat as run_pretreat

    try:
        total = sum(1 for _ in iter_raw_walks(raw_root))
        with tqdm(total=total, unit="walk", desc="pretreat") as bar:
            report = run_pretreat(
                raw_root, out_root, workers=workers, min_frames=min_frames, on_walk=bar.update
            )
    except DatasetError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(
        f"wrote {report.walks_written} walks ({report.frames_written} frames; "
        f"{report.frames_dropped} frames dropped for too little foreground) to {out_root}"
    )
    for skipped in report.skipped:
        typer.echo(f"skipped {skipped.key}: {skipped.reason}")


def clip_walks(
    data_root: Annotated[Path, typer.Argument(help="Dataset root in the OpenGait layout.")],
    out: Annotated[Path, typer.Option(help="Where to write the clip-route walks (same layout).")],
    subjects: Annotated[
        str, typer.Option(help="Subjects whose walks to read through clips, e.g. '063-074'.")
    ],
    conditions: Annotated[
        str,
        typer.Option(help="Comma-separated walks, e.g. 'nm-05,bg-01,cl-01' (the probes)."),
    ] = "nm-05,nm-06,bg-01,bg-02,cl-01,cl-02",
    views: Annotated[
        str | None, typer.Option(help="Comma-separated views, e.g. '054,090' (default: all).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Camera seed: same seed, same clips.")] = 0,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes (one core each).")] = 1,
    working_height: Annotated[
        int | None,
        typer.Option(
            min=48,
            max=1080,
            help="Rows the segmentation works at (default: the service's, "
            "SegmentationConfig.working_height).",
        ),
    ] = None,
) -> None:
    """Read walks through composited camera clips as the service reads an upload.

    Each walk becomes a clip of a varied camera (scene, size, direction, clothing contrast,
    noise, shadow, codec), decoded and segmented by the service's own code; the result is
    written in the OpenGait layout for `gaitid eval --probe-data`, with one JSON line per walk
    (camera, frames visible / kept, drop reasons, mask IoU, or why it was refused) in
    OUT/clip-walks.jsonl. Resumes where an earlier run stopped.
    """
    from tqdm import tqdm

    from gaitid.segment import SegmentationConfig
    from gaitid.training.clip_walks import (
        build_clip_walks,
        done_walks,
        read_manifest,
        summarize,
    )
    from gaitid.training.data.errors import DatasetError
    from gaitid.training.data.opengait import index_dataset, parse_subject_spec

    try:
        wanted = set(parse_subject_spec(subjects))
        index = index_dataset(data_root)
    except DatasetError as exc:
        raise _fail(str(exc)) from exc
    chosen_conditions = {c.strip() for c in conditions.split(",") if c.strip()}
    chosen_views = {v.strip() for v in views.split(",") if v.strip()} if views else None
    walks = [
        (key, path)
        for key, path in index
        if key.subject in wanted
        and key.condition in chosen_conditions
        and (chosen_views is None or key.view in chosen_views)
    ]
    if not walks:
        raise _fail(f"no walk of subjects {subjects} with conditions {conditions} in {data_root}")
    config = (
        SegmentationConfig(working_height=working_height)
        if working_height is not None
        else SegmentationConfig()
    )
    with tqdm(total=len(walks), unit="walk", desc="clip-walks") as bar:
        done = done_walks(out)
        bar.update(sum(1 for key, _path in walks if str(key) in done))
        try:
            for record in build_clip_walks(walks, out, seed=seed, jobs=jobs, config=config):
                bar.update()
                if record.error:
                    bar.write(f"{record.key}: refused ({record.error})")
        except ValueError as exc:
            raise _fail(str(exc)) from exc
    keys = {str(key) for key, _path in walks}
    summary = summarize([r for r in read_manifest(out) if r.key in keys])
    typer.echo(json.dumps(summary, indent=2, sort_keys=True))


def gei_baseline(
    data_root: Annotated[Path, typer.Argument(help="Dataset root in the OpenGait layout.")],
    subjects: Annotated[
        str | None, typer.Option(help="Subjects to evaluate, e.g. '063-074' or '001,005-009'.")
    ] = None,
    partition: Annotated[
        Path | None, typer.Option(help="Evaluate the TEST_SET of this partition JSON.")
    ] = None,
) -> None:
    """GEI + nearest neighbour under the CASIA-B protocol: NM/BG/CL cross-view rank-1."""
    from gaitid.training.baselines.gei import gei_baseline as run_baseline
    from gaitid.training.data.errors import DatasetError
    from gaitid.training.data.opengait import load_dataset, load_partition, parse_subject_spec

    if subjects is not None and partition is not None:
        raise typer.BadParameter("give either --subjects or --partition, not both")
    try:
        wanted: list[str] | None = None
        if subjects is not None:
            wanted = parse_subject_spec(subjects)
        elif partition is not None:
            wanted = load_partition(partition).test_set
            if not wanted:
                raise DatasetError(f"partition {partition} has an empty TEST_SET")
        walks = load_dataset(data_root, subjects=wanted)
        if not walks:
            raise DatasetError(f"no walks under {data_root}")
        table = run_baseline(walks)
    except (DatasetError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    n_subjects = len({key.subject for key in walks})
    typer.echo(
        f"GEI + 1-NN (Euclidean), CASIA-B protocol: {n_subjects} subjects, {len(walks)} walks; "
        "rank-1 %, identical views excluded"
    )
    header = f"{'probe':<6}{'mean':>7}{'same-view':>11}  " + " ".join(
        f"{v:>5}" for v in table.views
    )
    typer.echo(header)
    for group in table.accuracy:
        per_view = " ".join(f"{v:5.1f}" for v in table.per_probe_view(group))
        typer.echo(
            f"{group:<6}{table.cross_view(group):7.1f}{table.same_view(group):11.1f}  {per_view}"
        )
