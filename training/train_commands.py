"""The ``gaitid train`` and ``gaitid eval`` commands (registered by ``training/cli.py``).

Importing this module is cheap: torch, onnxruntime and matplotlib load inside the command
bodies, so ``gaitid --help`` stays fast. Known failures (bad config, missing data, a checkpoint
that cannot be resumed) exit with status 2 and one clear message instead of a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import numpy as np
import typer

from gaitid.errors import EXIT_BAD_INPUT

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from gaitid.training.data.opengait import WalkKey
    from gaitid.training.evaluation.protocols import FeatureSet

logger = logging.getLogger(__name__)


class EvalDevice(StrEnum):
    cpu = "cpu"
    cuda = "cuda"


class Protocol(StrEnum):
    casia_b = "casia-b"
    ou_mvlp = "ou-mvlp"
    retrieval = "retrieval"
    open_set = "open-set"


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=EXIT_BAD_INPUT)


def _saved_settings(run_dir: Path) -> dict[str, Any]:
    """The settings a resume keeps from the run in ``run_dir`` (its ``config.yaml``).

    A resumed run keeps its budget (its schedule is sized by it), its seed and the weights it
    started from, however they were set, so ``--resume`` need not repeat ``--max-minutes``,
    ``--seed`` or ``--init``.
    """
    import yaml

    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return {}
    raw = yaml.safe_load(saved.read_text()) or {}
    settings: dict[str, Any] = {"seed": raw.get("seed"), "init": raw.get("init")}
    minutes = (raw.get("schedule") or {}).get("minutes")
    if minutes is not None:
        settings["schedule"] = {"minutes": float(minutes)}
    return {key: value for key, value in settings.items() if value is not None}


def train_command(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="Training config YAML."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue OUT/checkpoints/last.pt exactly."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Run folder (default: output_dir of the config)."
    ),
    stop_after: int | None = typer.Option(
        None,
        "--stop-after",
        min=1,
        help="Stop with a checkpoint after this iteration (resume later).",
    ),
    max_minutes: float | None = typer.Option(
        None,
        "--max-minutes",
        min=0.0,
        help=(
            "Wall-time budget of the whole run (sets schedule.minutes): the decays fall at "
            "their fractions of it and the embedding fit and validation finish inside it."
        ),
    ),
    init: Path | None = typer.Option(
        None,
        "--init",
        exists=True,
        dir_okay=False,
        help=(
            "Start from these weights (a checkpoint or the shipped .pt) instead of a random "
            "init: the config's recipe, continued. Sets init.checkpoint; every weight must fit."
        ),
    ),
    seed: int | None = typer.Option(
        None,
        "--seed",
        help="Seed of the batches and the init (sets seed; a continued run "
        "should not repeat the batches of the run it continues).",
    ),
    init_member: int | None = typer.Option(
        None,
        "--init-member",
        min=0,
        help="With --init of an ensemble (`gaitid ensemble`): the member network to continue "
        "(0-based; sets init.member).",
    ),
) -> None:
    """Train an LMGCS network from a validated config (unknown keys are an error)."""
    from gaitid.training.checkpoint import CheckpointError
    from gaitid.training.config import ConfigError, load_config
    from gaitid.training.data.errors import DatasetError
    from gaitid.training.sampler import SamplerError
    from gaitid.training.trainer import Trainer, TrainingError

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load_config(config)
        run_dir = out.resolve() if out is not None else cfg.output_dir
        if run_dir is None:
            raise _fail(f"{config} sets no output_dir; pass --out DIR")
        overrides = _saved_settings(run_dir) if resume else {}
        if max_minutes is not None:
            overrides["schedule"] = {"minutes": max_minutes}
        if seed is not None:
            overrides["seed"] = seed
        if init is not None:  # relative to where the command was typed, not to the config
            overrides["init"] = {"checkpoint": str(init.resolve())}
        if init_member is not None:
            overrides["init"] = {**overrides.get("init", {}), "member": init_member}
        if overrides:
            cfg = load_config(config, overrides)
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    try:
        result = Trainer(cfg, run_dir).fit(resume=resume, stop_after=stop_after)
    except (TrainingError, DatasetError, SamplerError, CheckpointError) as exc:
        raise _fail(str(exc)) from exc
    state = "finished" if result.finished else "stopped (continue with --resume)"
    typer.echo(f"{state} at iteration {result.iteration}; checkpoint {result.checkpoint}")
    if result.eval_summary:
        typer.echo(json.dumps({k: round(v, 2) for k, v in result.eval_summary.items()}))


def eval_command(
    model_file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="Checkpoint (.pt) or ONNX file."
    ),
    data: Path = typer.Option(
        ..., "--data", exists=True, file_okay=False, help="OpenGait-layout root."
    ),
    protocol: Protocol = typer.Option(Protocol.casia_b, "--protocol", help="Evaluation protocol."),
    partition: Path | None = typer.Option(
        None,
        "--partition",
        exists=True,
        dir_okay=False,
        help="Evaluate the TEST_SET of this partition JSON.",
    ),
    subjects: str | None = typer.Option(
        None, "--subjects", help="Subjects to evaluate, e.g. 063-074."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write report.md, report.json and heatmaps here."
    ),
    probe_conditions: str | None = typer.Option(
        None, "--probe-conditions", help="retrieval: comma-separated probe conditions."
    ),
    gallery_conditions: str | None = typer.Option(
        None, "--gallery-conditions", help="retrieval: comma-separated gallery conditions."
    ),
    probe_data: Path | None = typer.Option(
        None,
        "--probe-data",
        exists=True,
        file_okay=False,
        help=(
            "Read the probe walks from this root instead (e.g. `gaitid clip-walks` output: "
            "the camera-clip route); the gallery stays --data's."
        ),
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Walks per forward pass."),
    device: EvalDevice = typer.Option(
        EvalDevice.cpu, "--device", help="Where a checkpoint runs (ONNX runs on the CPU)."
    ),
    target_fmr: float = typer.Option(
        1e-3,
        "--target-fmr",
        min=1e-9,
        max=0.5,
        help="open-set: false-match rate the default threshold is chosen at.",
    ),
    shifts: str | None = typer.Option(
        None,
        "--shifts",
        help="A checkpoint's test-time shift set: cross (the default, what `gaitid export` "
        "writes) or none (the network alone). An ONNX file holds its own in its graph.",
    ),
    cache: Path | None = typer.Option(
        None,
        "--cache",
        file_okay=False,
        help="ONNX files: keep each walk's embedding here and embed only walks not yet kept "
        "for this network (the shipping recipe's evaluations, clip calibration and `gaitid "
        "quantize --cache` share them).",
    ),
    calibrate: bool = typer.Option(
        False,
        "--calibrate",
        help="With a rank-1 protocol on silhouettes: also calibrate the open-set threshold on "
        "the same embeddings (OUT/calibration.*), as a training run's validation does; one "
        "embedding pass instead of a second `--protocol open-set` run.",
    ),
) -> None:
    """Evaluate a checkpoint or ONNX export under a gait protocol; print the markdown table.

    ``--protocol open-set`` calibrates instead: FMR/FNMR (ROC/DET), open-set identification
    (DIR at FAR 1 %) and the default decision threshold at ``--target-fmr``, written to
    ``OUT/calibration.json`` (what ``gaitid export --threshold-from`` reads) with its curve.
    """
    from gaitid.training.clip_walks import route_name
    from gaitid.training.data.errors import DatasetError
    from gaitid.training.data.opengait import load_partition, parse_subject_spec
    from gaitid.training.evaluation.embedding_cache import EmbeddingCache
    from gaitid.training.evaluation.extract import (
        ModelFileError,
        features_from_file,
        load_eval_walks,
        load_route_walks,
    )
    from gaitid.training.evaluation.protocols import (
        CASIA_B_GALLERY,
        ProtocolError,
        ProtocolName,
        run_protocol,
    )
    from gaitid.training.evaluation.report import to_markdown, write_report

    if partition is not None and subjects is not None:
        raise _fail("give --partition or --subjects, not both")
    if cache is not None and model_file.suffix != ".onnx":
        raise _fail("--cache keeps the embeddings of ONNX files; this is a checkpoint")
    if calibrate and (protocol is Protocol.open_set or probe_data is not None):
        raise _fail("--calibrate goes with a rank-1 protocol on silhouettes (no --probe-data)")
    try:
        chosen = parse_subject_spec(subjects) if subjects else None
        if partition is not None:
            chosen = list(load_partition(partition).test_set)
    except DatasetError as exc:
        raise _fail(str(exc)) from exc
    split = (
        tuple(s.strip() for s in probe_conditions.split(",")) if probe_conditions else None,
        tuple(s.strip() for s in gallery_conditions.split(",")) if gallery_conditions else None,
    )
    try:
        if probe_data is None:
            keys, walks = load_eval_walks(data.resolve(), chosen)
        else:
            keys, walks = load_route_walks(
                data.resolve(), probe_data.resolve(), chosen, split[1] or CASIA_B_GALLERY
            )
        twins: tuple[list[WalkKey], list[NDArray[np.uint8]]] = ([], [])
        gallery = frozenset(split[1] or CASIA_B_GALLERY)
        if protocol is Protocol.open_set and probe_data is not None:
            # the route's probe walks as clean silhouettes too: what the route does to the
            # threshold is measured walk for walk (``threshold_transfer.measure_route_shift``)
            read = {key for key in keys if key.condition not in gallery}
            twins = load_eval_walks(data.resolve(), chosen, lambda key: key in read)
        every, info = features_from_file(
            model_file,
            [*keys, *twins[0]],
            [*walks, *twins[1]],
            device=device.value,
            batch_size=batch_size,
            shifts=shifts,
            cache=None if cache is None else EmbeddingCache(cache),
        )
        features = every.subset(np.arange(len(every.subjects)) < len(keys))
        if protocol is Protocol.open_set:
            probes = "silhouettes" if probe_data is None else route_name(probe_data)
            silhouettes = (
                _clean_twins(every, keys, twins[0], gallery) if probe_data is not None else None
            )
            calibration = (features, str(info["test_time_shifts"]), probes, silhouettes)
            _calibrate(model_file, target_fmr, out, *calibration)
            return
        results = run_protocol(
            features,
            cast(ProtocolName, protocol.value),
            probe_conditions=split[0],
            gallery_conditions=split[1],
        )
        if calibrate:
            _calibrate(
                model_file, target_fmr, out, features, str(info["test_time_shifts"]), "silhouettes"
            )
    except (DatasetError, ModelFileError, ProtocolError) as exc:
        raise _fail(str(exc)) from exc
    meta = {
        "protocol": protocol.value,
        "data": (
            f"{data.resolve()} ({len(set(features.subjects.tolist()))} subjects, {len(keys)} walks)"
        ),
        "model": str(model_file.resolve()),
        "model_format": info.get("format"),
        "test_time_shifts": info.get("test_time_shifts"),
        "probes": "silhouettes" if probe_data is None else str(probe_data.resolve()),
    }
    typer.echo(to_markdown(results, full_tables=False))
    if out is not None:
        written = write_report(results, out.resolve(), meta)
        typer.echo("wrote " + ", ".join(str(p) for p in written.values()))


def _clean_twins(
    every: FeatureSet, keys: list[WalkKey], twin_keys: list[WalkKey], gallery: frozenset[str]
) -> FeatureSet:
    """The route's feature set (``every``'s first ``len(keys)`` rows) with each probe walk (a
    condition outside ``gallery``) replaced by its clean twin (the rows after them, keyed by
    ``twin_keys``): the same walks in the same order, read as silhouettes."""
    from gaitid.training.evaluation.protocols import ProtocolError

    twin_row = {key: len(keys) + i for i, key in enumerate(twin_keys)}
    missing = sorted(
        {str(k) for k in keys if k.condition not in gallery} - {str(k) for k in twin_row}
    )
    if missing:
        raise ProtocolError(
            f"{len(missing)} probe walks have no clean silhouettes under --data "
            f"(e.g. {missing[0]}): the route's shift is measured against them"
        )
    return every.subset(np.array([twin_row.get(key, i) for i, key in enumerate(keys)]))


def _calibrate(
    model_file: Path,
    target_fmr: float,
    out: Path | None,
    features: FeatureSet,
    shifts: str,
    probes: str,
    silhouettes: FeatureSet | None = None,
) -> None:
    """The open-set protocol of ``gaitid eval``: print the tables, write the calibration
    (``shifts``: the test-time shift set the embeddings averaged; ``probes``: how the probe
    walks were read, both recorded with it; ``silhouettes``: the same walks as clean
    silhouettes, when the probes came by another route)."""
    from gaitid.training.evaluation.open_set import calibrate, to_markdown, write_calibration
    from gaitid.training.evaluation.threshold_transfer import measure_route_shift

    result = calibrate(features, target_fmr=target_fmr)
    if silhouettes is not None:
        shift = measure_route_shift(silhouettes, features, target_fmr=target_fmr)
        result.route_shift = shift.as_record()
    typer.echo(to_markdown(result))
    if out is not None:
        written = write_calibration(
            result, out.resolve(), model=model_file.name, shifts=shifts, probes=probes
        )
        typer.echo("wrote " + ", ".join(str(p) for p in written))


# The options of a head fit, shared by `fit-embedding` and `average`.
_FitData = Annotated[
    Path, typer.Option("--data", exists=True, file_okay=False, help="OpenGait-layout root.")
]
_FitSubjects = Annotated[
    str | None,
    typer.Option(
        "--subjects",
        help="Subjects to fit on, e.g. 001-062 (default: the checkpoint's training subjects).",
    ),
]
_FitClipWalks = Annotated[
    Path | None,
    typer.Option(
        "--clip-walks",
        exists=True,
        file_okay=False,
        help="Also fit on these readings of the same subjects (`gaitid clip-walks` output), as "
        "`gaitid train` does with the config's data.clip_walks.",
    ),
]
_FitMaxWalks = Annotated[int, typer.Option("--max-walks", min=3, help="Seeded sample of walks.")]
_FitMaxFrames = Annotated[
    int | None,
    typer.Option(
        "--max-frames",
        min=1,
        help="Frames of each walk the fit reads (its middle window; default every frame). "
        "`gaitid train` fits on the config's embedding.fit_frames.",
    ),
]
_FitRegularization = Annotated[
    float, typer.Option("--regularization", min=1e-6, help="Within-class whitening ridge.")
]
_FitSeed = Annotated[int, typer.Option("--seed", help="Seed of the walk sample.")]
_FitDevice = Annotated[EvalDevice, typer.Option("--device", help="Where the network runs.")]


@dataclass(frozen=True)
class _HeadFit:
    """What a head fit reads and how (the options above)."""

    data: Path
    subjects: str | None
    clip_walks: Path | None
    max_walks: int
    max_frames: int | None
    regularization: float
    seed: int
    device: EvalDevice


def fit_embedding_command(
    checkpoint: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="Checkpoint written by `gaitid train`."),
    ],
    data: _FitData,
    out: Annotated[
        Path | None,
        typer.Option(help="Write the fitted checkpoint here (default: update it in place)."),
    ] = None,
    subjects: _FitSubjects = None,
    clip_walks: _FitClipWalks = None,
    max_walks: _FitMaxWalks = 4000,
    max_frames: _FitMaxFrames = None,
    regularization: _FitRegularization = 1.0,
    seed: _FitSeed = 0,
    device: _FitDevice = EvalDevice.cpu,
) -> None:
    """(Re)fit a checkpoint's 256-d service embedding (PCA + within-class whitening).

    `gaitid train` does this after its last iteration; use this for a checkpoint of a stopped
    run, another training set or another regularisation.
    """
    from gaitid.model.export import CheckpointError
    from gaitid.training.checkpoint import load_checkpoint, save_checkpoint

    fit = _HeadFit(data, subjects, clip_walks, max_walks, max_frames, regularization, seed, device)
    try:
        state = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise _fail(str(exc)) from exc
    _refit_embedding(state, str(checkpoint), fit)
    typer.echo(f"wrote {save_checkpoint(state, out if out is not None else checkpoint)}")


def average_command(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="Checkpoints of one network: a run's snapshots (iter-*.pt), the weights it "
            "continued from.",
        ),
    ],
    data: _FitData,
    out: Annotated[Path, typer.Option(dir_okay=False, help="Write the average here.")],
    subjects: _FitSubjects = None,
    clip_walks: _FitClipWalks = None,
    max_walks: _FitMaxWalks = 4000,
    max_frames: _FitMaxFrames = None,
    regularization: _FitRegularization = 1.0,
    seed: _FitSeed = 0,
    device: _FitDevice = EvalDevice.cpu,
) -> None:
    """Average the weights of several checkpoints (stochastic weight averaging), refit the head.

    For snapshots along one continuation at a constant learning rate
    (`trainer.keep_checkpoints`); the 256-d embedding is fitted again on the averaged network,
    as `gaitid fit-embedding` does (`training.weight_average`).
    """
    from gaitid.training.weight_average import average_checkpoints

    fit = _HeadFit(data, subjects, clip_walks, max_walks, max_frames, regularization, seed, device)
    _write_combined(checkpoints, out, average_checkpoints, "average", fit)


def ensemble_command(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(
            exists=True,
            dir_okay=False,
            help="Networks trained independently (checkpoints or shipped weights files).",
        ),
    ],
    data: _FitData,
    out: Annotated[Path, typer.Option(dir_okay=False, help="Write the ensemble here.")],
    version: Annotated[
        str | None,
        typer.Option(help="The ensemble's version (default: the members' versions joined)."),
    ] = None,
    subjects: _FitSubjects = None,
    clip_walks: _FitClipWalks = None,
    max_walks: _FitMaxWalks = 4000,
    max_frames: _FitMaxFrames = None,
    regularization: _FitRegularization = 1.0,
    seed: _FitSeed = 0,
    device: _FitDevice = EvalDevice.cpu,
) -> None:
    """Join independently trained networks into one embedding and fit its 256-d head.

    The members' part features are read side by side and one head (PCA + within-class
    whitening, as `gaitid fit-embedding`) maps them to the service's embedding
    (`model.ensemble`). The result exports, evaluates and calibrates like one network's
    checkpoint; its held-out subjects are those no member trained on.
    """
    from gaitid.training.ensemble import ensemble_checkpoint

    fit = _HeadFit(data, subjects, clip_walks, max_walks, max_frames, regularization, seed, device)
    _write_combined(
        checkpoints, out, lambda paths: ensemble_checkpoint(paths, version=version), "ensemble", fit
    )


def _write_combined(
    checkpoints: list[Path],
    out: Path,
    combine: Callable[[list[Path]], dict[str, Any]],
    what: str,
    fit: _HeadFit,
) -> None:
    """``gaitid average`` and ``gaitid ensemble``: ``combine`` the checkpoints into one
    network (the ``what``), fit its 256-d head as ``fit`` says and write it to ``out``, once,
    with its head: a combination without one is no model."""
    from gaitid.model.export import CheckpointError
    from gaitid.training.checkpoint import save_checkpoint

    if out.resolve() in {path.resolve() for path in checkpoints}:
        raise _fail(f"--out {out} is one of the checkpoints given; write the {what} elsewhere")
    try:
        combined = combine(checkpoints)
    except CheckpointError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"{what}: {len(checkpoints)} checkpoints, {combined['meta'].get('variant')}")
    _refit_embedding(combined, f"the {what} of {len(checkpoints)} checkpoints", fit)
    typer.echo(f"wrote {save_checkpoint(combined, out)}")


def _refit_embedding(state: dict[str, Any], source: str, fit: _HeadFit) -> None:
    """Fit the 256-d head of the checkpoint dict ``state`` (named ``source`` in errors) as
    ``fit`` says, in place: its weights and ``meta.embedding_fit``."""
    import torch

    from gaitid.model.export import CheckpointError, checkpoint_model
    from gaitid.training.data.errors import DatasetError
    from gaitid.training.data.opengait import parse_subject_spec
    from gaitid.training.embedding_fit import EmbeddingFitError, fit_embedding
    from gaitid.training.evaluation.extract import load_eval_walks

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if fit.device is EvalDevice.cuda and not torch.cuda.is_available():
        raise _fail("--device cuda: no CUDA device is available")
    device = torch.device(fit.device.value)
    try:
        model = checkpoint_model(state, source)
        meta = dict(state.get("meta", {}))
        chosen = parse_subject_spec(fit.subjects) if fit.subjects else meta.get("train_subjects")
        if not chosen:
            raise _fail(f"{source} records no training subjects; pass --subjects")
        keys, walks = load_eval_walks(fit.data.resolve(), list(chosen))
        if fit.clip_walks is not None:
            clip_keys, clip = load_eval_walks(fit.clip_walks.resolve(), list(chosen))
            keys, walks = keys + clip_keys, walks + clip
        names = sorted({key.subject for key in keys})
        index = {name: i for i, name in enumerate(names)}
        labels = [index[key.subject] for key in keys]
        model.to(device)
        summary = fit_embedding(
            model,
            walks,
            labels,
            device=device,
            max_walks=fit.max_walks,
            max_frames=fit.max_frames,
            regularization=fit.regularization,
            seed=fit.seed,
        )
    except (CheckpointError, DatasetError, EmbeddingFitError) as exc:
        raise _fail(str(exc)) from exc
    summary["subjects"] = f"{names[0]}..{names[-1]} ({len(names)})"
    if fit.clip_walks is not None:
        summary["clip_walks"] = fit.clip_walks.name
    state["model"] = {k: v.cpu() for k, v in model.state_dict().items()}
    state["meta"] = {**meta, "embedding_fit": summary}
    typer.echo(json.dumps(summary))
