"""``gaitid export``, ``gaitid quantize``, ``gaitid transfer-threshold`` and ``gaitid model-info``:
the model part of the CLI.

torch and onnx are imported inside the command bodies, so registering these commands (and
``gaitid --help``, ``gaitid serve``) never loads torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

from gaitid.contract import DEFAULT_TEST_TIME_SHIFTS, ContractError, shift_offsets

if TYPE_CHECKING:
    from gaitid.training.evaluation.threshold_transfer import ThresholdTransfer


def register(app: typer.Typer) -> None:
    """Add ``export``, ``quantize``, ``transfer-threshold`` and ``model-info`` to ``app``."""
    app.command("export")(export_command)
    app.command("quantize")(quantize_command)
    app.command("transfer-threshold")(transfer_threshold_command)
    app.command("model-info")(model_info_command)


def export_command(
    checkpoint: Path | None = typer.Argument(
        None, help="Checkpoint written by `gaitid train` (omit with --random-init)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the ONNX model."),
    random_init: str | None = typer.Option(
        None, "--random-init", help="Export a freshly initialised VARIANT instead (tests)."
    ),
    seed: int = typer.Option(0, help="Seed of --random-init weights."),
    fp16: bool = typer.Option(False, "--fp16", help="float16 network (for GPU providers)."),
    backbone_layout: str = typer.Option(
        "frame-major",
        "--backbone-layout",
        help="How the 3x3x3 convolutions are written, all exact: frame-major (default, the "
        "fastest in ONNX Runtime), time-stacked, tiled or conv3d (model/export.py; "
        "BENCHMARKS.md compares them).",
    ),
    allow_unfitted: bool = typer.Option(
        False,
        "--allow-unfitted",
        help="Export a checkpoint whose embedding is not fitted yet (its embedding is then a "
        "random projection).",
    ),
    threshold_from: Path | None = typer.Option(
        None,
        "--threshold-from",
        exists=True,
        dir_okay=False,
        help="calibration.json of `gaitid eval --protocol open-set`: stored as the model's "
        "default_threshold (the service's threshold_source: model). Without it, a threshold "
        "the weights carry (`--weights` files record theirs) is kept.",
    ),
    clip_threshold_from: Path | None = typer.Option(
        None,
        "--clip-threshold-from",
        exists=True,
        dir_okay=False,
        help="calibration.json of `gaitid eval --probe-data CLIP_WALKS --protocol open-set`: "
        "the model's clip_threshold, which the service holds camera-clip uploads to instead of "
        "default_threshold, is the default moved by the route's shift it measured on the same "
        "walks' silhouettes (a calibration without one gives its own threshold). Without it, "
        "one the weights carry is kept.",
    ),
    version: str | None = typer.Option(
        None,
        "--version",
        help="The model version in the metadata (default: the checkpoint's). Give a new one "
        "whenever the embedding function changes (weights or --shifts): the service never "
        "compares templates embedded under another version.",
    ),
    training_data: str | None = typer.Option(
        None,
        "--training-data",
        help="Describe the training data in the metadata (default: the checkpoint's record).",
    ),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        help="Also write the PyTorch weights here (for fine-tuning: weights, config and "
        "provenance; no optimiser state, no local paths).",
    ),
    shifts: str = typer.Option(
        DEFAULT_TEST_TIME_SHIFTS,
        "--shifts",
        help="Test-time shift set the graph averages a walk's embedding over: cross (the "
        "frames as they are and moved one pixel each way, five passes) or none (one pass); "
        "model/test_time.py. A threshold calibrated with another set is refused.",
    ),
) -> None:
    """Export a checkpoint (or a random-init variant) to the service's ONNX model."""
    if (checkpoint is None) == (random_init is None):
        raise typer.BadParameter("give exactly one of CHECKPOINT or --random-init VARIANT")
    if random_init is not None and (
        threshold_from or clip_threshold_from or training_data or weights or version
    ):
        raise typer.BadParameter(
            "--threshold-from, --clip-threshold-from, --training-data, --version and --weights "
            "describe a trained checkpoint; a --random-init export has none"
        )
    from gaitid.model.config import VARIANTS
    from gaitid.model.export import BACKBONE_LAYOUTS, BackboneLayout

    if backbone_layout not in BACKBONE_LAYOUTS:
        raise typer.BadParameter(
            f"unknown layout {backbone_layout!r}; one of {', '.join(BACKBONE_LAYOUTS)}",
            param_hint="--backbone-layout",
        )
    layout = cast(BackboneLayout, backbone_layout)
    try:
        shift_offsets(shifts)  # the contract's message, before the export's work
    except ContractError as exc:
        raise typer.BadParameter(str(exc), param_hint="--shifts") from exc
    if random_init is not None and random_init not in VARIANTS:
        raise typer.BadParameter(
            f"unknown variant {random_init!r}; choose one of {sorted(VARIANTS)}",
            param_hint="--random-init",
        )
    from gaitid import __version__
    from gaitid.contract import (
        CLIP_THRESHOLD_KEY,
        DEFAULT_THRESHOLD_KEY,
        TEST_TIME_SHIFTS_KEY,
        THRESHOLD_KEYS,
    )
    from gaitid.model.export import (
        CheckpointError,
        export_onnx,
        export_random_init,
        load_checkpoint_model,
        network_variant,
        write_weights,
    )

    if random_init is not None:
        path = export_random_init(
            random_init, out, seed=seed, fp16=fp16, backbone=layout, shifts=shifts
        )
    else:
        assert checkpoint is not None
        try:
            model, state = load_checkpoint_model(checkpoint)
        except CheckpointError as exc:
            raise typer.BadParameter(str(exc), param_hint="CHECKPOINT") from exc
        if not model.embedding_head.is_fitted and not allow_unfitted:
            raise typer.BadParameter(
                "its 256-d embedding is not fitted (`gaitid train` fits it after the last "
                f"iteration): run `gaitid fit-embedding {checkpoint} --data ROOT` first, or "
                "pass --allow-unfitted",
                param_hint="CHECKPOINT",
            )
        meta = state.get("meta") or {}
        # a threshold, and an exported version, name the embedding function they were
        # measured on (a training checkpoint records no shift set: its version names weights)
        carried = meta.get(TEST_TIME_SHIFTS_KEY, "none") == shifts
        if TEST_TIME_SHIFTS_KEY in meta and not carried and version is None:
            raise typer.BadParameter(
                f"the weights' version {meta['version']!r} names their embedding with the shift "
                f"set {meta.get(TEST_TIME_SHIFTS_KEY, 'none')!r}; an export with {shifts!r} "
                "embeds differently, so the service must not compare their templates: give "
                "it its own --version",
                param_hint="--shifts",
            )
        metadata = {
            "variant": str(meta.get("variant") or network_variant(model)),
            "version": version or str(meta.get("version") or f"{__version__}+{checkpoint.stem}"),
            "training_data": training_data
            or str(meta.get("training_data") or meta.get("data") or "unknown"),
        }
        # a run's checkpoint records it at the top, a weights file (--weights) in its meta
        if (iteration := state.get("iteration", meta.get("iteration"))) is not None:
            metadata["iteration"] = str(iteration)
        if fit := meta.get("embedding_fit"):
            metadata["embedding_fit"] = json.dumps(fit, sort_keys=True)
        calibrations = {
            DEFAULT_THRESHOLD_KEY: ("--threshold-from", threshold_from),
            CLIP_THRESHOLD_KEY: ("--clip-threshold-from", clip_threshold_from),
        }
        for key, record_key in THRESHOLD_KEYS:
            option, calibration = calibrations[key]
            if calibration is not None:
                threshold, provenance = _read_calibration(calibration, option, shifts)
                if key == CLIP_THRESHOLD_KEY and "route_shift" in provenance:
                    threshold, provenance = _route_threshold(
                        metadata.get(
                            DEFAULT_THRESHOLD_KEY,
                            meta.get(DEFAULT_THRESHOLD_KEY) if carried else None,
                        ),
                        threshold,
                        provenance,
                    )
                metadata[key] = f"{threshold:.6f}"
                metadata[record_key] = json.dumps(provenance, sort_keys=True)
            elif key in meta and carried:  # weights that ship with their calibrated threshold
                metadata[key] = str(meta[key])
                if record_key in meta:
                    metadata[record_key] = str(meta[record_key])
            elif key in meta:
                typer.echo(
                    f"note: the weights' {key} was calibrated with the shift set "
                    f"{meta.get(TEST_TIME_SHIFTS_KEY, 'none')!r}, not {shifts!r}: it is left "
                    "out; calibrate this export with `gaitid eval --protocol open-set`"
                )
        metadata[TEST_TIME_SHIFTS_KEY] = shifts
        path = export_onnx(model, out, metadata=metadata, fp16=fp16, backbone=layout, shifts=shifts)
        if weights is not None:
            typer.echo(f"wrote {write_weights(model, state, weights, metadata)}")
    typer.echo(f"wrote {path}")


def _route_threshold(
    default: object, own: float, provenance: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """The clip route's threshold from a calibration that measured the route's shift: the
    default threshold moved by it (``threshold_transfer.route_threshold``), not the threshold
    of the clip readings alone (``own``), which mixes the route with the walks it could read."""
    from gaitid.training.evaluation.protocols import ProtocolError
    from gaitid.training.evaluation.threshold_transfer import route_threshold

    if default is None:
        raise typer.BadParameter(
            "this calibration measured the route's shift against clean silhouettes, which is "
            "applied to the default threshold: give --threshold-from too",
            param_hint="--clip-threshold-from",
        )
    try:
        threshold = route_threshold(float(str(default)), provenance["route_shift"])
    except (ProtocolError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--clip-threshold-from") from exc
    rule = "default_threshold + route_shift.shift (the same walks' clean silhouettes)"
    # the calibration's FNMR is the one at the readings' own threshold, not at this one
    record = {k: v for k, v in provenance.items() if k != "fnmr_at_threshold"}
    record["route_own_fnmr"] = provenance.get("fnmr_at_threshold")
    return threshold, {**record, "rule": rule, "route_own_threshold": round(own, 6)}


def _read_calibration(path: Path, option: str, shifts: str) -> tuple[float, dict[str, object]]:
    """The threshold and provenance of a ``calibration.json`` measured with the test-time
    shift set ``shifts``; a bad file, or one measured with another set, names ``option``."""
    from gaitid.training.evaluation.open_set import read_threshold
    from gaitid.training.evaluation.protocols import ProtocolError

    try:
        threshold, provenance = read_threshold(path)
    except ProtocolError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from exc
    if provenance["test_time_shifts"] != shifts:
        raise typer.BadParameter(
            f"{path} was calibrated with the test-time shift set "
            f"{provenance['test_time_shifts']!r} and this export averages {shifts!r}: the "
            f"threshold would not hold; calibrate with `--shifts {shifts}` (or export with "
            f"`--shifts {provenance['test_time_shifts']}`)",
            param_hint=option,
        )
    return threshold, provenance


def quantize_command(
    model_file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="float32 ONNX model written by `gaitid export`."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the int8 ONNX model."),
    data: Path = typer.Option(
        ...,
        "--data",
        exists=True,
        file_okay=False,
        help="OpenGait-layout root of the calibration walks (training walks, not test ones).",
    ),
    subjects: str | None = typer.Option(
        None, "--subjects", help="Calibrate on these subjects only, e.g. 001-062."
    ),
    walks: int = typer.Option(64, "--walks", min=1, help="Calibration walks, drawn at random."),
    seed: int = typer.Option(0, help="Seed of the draw."),
    method: str = typer.Option(
        "percentile", "--method", help="Activation ranges: percentile, minmax or entropy."
    ),
    threshold_subjects: str | None = typer.Option(
        None,
        "--threshold-subjects",
        help="Carry the float32 model's default_threshold (and clip_threshold, if it has one) "
        "over, shifted by how far int8 moves the FMR threshold on these subjects' walks (e.g. "
        "063-074); without it the float32 thresholds are kept as they are.",
    ),
    target_fmr: float = typer.Option(
        1e-3, "--target-fmr", min=1e-6, max=0.5, help="FMR at which the shift is measured."
    ),
    cache: Path | None = typer.Option(
        None,
        "--cache",
        file_okay=False,
        help="With --threshold-subjects: the embedding cache of `gaitid eval --cache` (the "
        "float32 file's walks embedded there are not embedded again; the int8 file's are kept "
        "for its evaluation).",
    ),
    reduce_range: bool = typer.Option(
        True,
        "--reduce-range/--full-range",
        help="7-bit weights (default): right on every x86 CPU. 8-bit weights saturate on CPUs "
        "without VNNI (model/quantize.py), where the service refuses to load them.",
    ),
) -> None:
    """Static int8 (QDQ) model calibrated on training walks; see model/quantize.py."""
    from gaitid.errors import EXIT_BAD_INPUT
    from gaitid.model.quantize import QuantizeError, quantize_int8
    from gaitid.preprocess import to_network_input
    from gaitid.training.data.errors import DatasetError
    from gaitid.training.data.opengait import draw_walks, parse_subject_spec
    from gaitid.training.evaluation.extract import ModelFileError
    from gaitid.training.evaluation.protocols import ProtocolError

    if method not in ("percentile", "minmax", "entropy"):
        raise typer.BadParameter(f"unknown method {method!r}; percentile, minmax or entropy")
    if cache is not None and threshold_subjects is None:
        raise typer.BadParameter(
            "--cache keeps the embeddings of --threshold-subjects; give both", param_hint="--cache"
        )
    try:
        chosen = parse_subject_spec(subjects) if subjects else None
        drawn = draw_walks(data.resolve(), chosen, walks, seed)
        calibration = [to_network_input(walk) for walk in drawn]
        source = f"{data.resolve().name}, subjects {subjects or 'all'}"
        meta = quantize_int8(
            model_file,
            out,
            calibration,
            method=method,  # type: ignore[arg-type]
            reduce_range=reduce_range,
            calibration_data=source,
        )
        if threshold_subjects is not None:
            meta = _carry_threshold(
                model_file, out, meta, data, threshold_subjects, target_fmr, cache
            )
    except (DatasetError, QuantizeError, ContractError, ProtocolError, ModelFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    typer.echo(f"wrote {out} ({meta['quantization']})")


def _measure_transfer(
    reference: Path,
    derived: Path,
    calibrated: float,
    data: Path,
    subjects: str | None,
    fmr: float,
    cache_dir: Path | None,
) -> ThresholdTransfer:
    """``threshold_transfer.transfer_threshold`` of two ONNX files on the walks of ``subjects``
    (every subject of ``data`` when ``None``): ``calibrated`` moved by the derived model's
    shift."""
    from gaitid.training.data.opengait import parse_subject_spec
    from gaitid.training.evaluation.embedding_cache import EmbeddingCache
    from gaitid.training.evaluation.extract import features_from_onnx, load_eval_walks
    from gaitid.training.evaluation.threshold_transfer import transfer_threshold

    chosen = parse_subject_spec(subjects) if subjects else None
    keys, walks = load_eval_walks(data.resolve(), chosen)
    cache = None if cache_dir is None else EmbeddingCache(cache_dir)
    return transfer_threshold(
        features_from_onnx(reference, keys, walks, batch_size=1, cache=cache),
        features_from_onnx(derived, keys, walks, batch_size=1, cache=cache),
        calibrated,
        target_fmr=fmr,
    )


def _carry_threshold(
    reference: Path,
    derived: Path,
    meta: dict[str, str],
    data: Path,
    subjects: str,
    fmr: float,
    cache_dir: Path | None = None,
) -> dict[str, str]:
    """Give ``derived`` the reference's thresholds shifted as measured on ``subjects``' walks.

    The shift is measured once, for the default threshold; a clip threshold moves by the same
    amount, since it is a threshold on the same model's scores and int8 changes the model,
    not the input route.
    """
    from dataclasses import replace

    from gaitid.contract import (
        CLIP_THRESHOLD_KEY,
        DEFAULT_THRESHOLD_KEY,
        THRESHOLD_KEYS,
    )
    from gaitid.model.quantize import QuantizeError, rewrite_metadata

    if DEFAULT_THRESHOLD_KEY not in meta:
        raise QuantizeError(f"{reference} has no {DEFAULT_THRESHOLD_KEY} to carry over")
    measured = _measure_transfer(
        reference, derived, float(meta[DEFAULT_THRESHOLD_KEY]), data, subjects, fmr, cache_dir
    )
    transfers = {DEFAULT_THRESHOLD_KEY: measured}
    if CLIP_THRESHOLD_KEY in meta:
        clip = float(meta[CLIP_THRESHOLD_KEY])
        transfers[CLIP_THRESHOLD_KEY] = replace(
            measured, calibrated=clip, threshold=measured.moved(clip)
        )
    walks_used = f"subjects {subjects}"
    shifted = dict(meta)
    for key, record_key in THRESHOLD_KEYS:
        if (transfer := transfers.get(key)) is not None:
            provenance = transfer.provenance(walks_used, meta.get(record_key))
            shifted[key] = f"{transfer.threshold:.6f}"
            shifted[record_key] = json.dumps(provenance, sort_keys=True)
            typer.echo(f"{key} {transfer.threshold:.6f}: {transfer.describe(walks_used)}")
    return rewrite_metadata(derived, shifted)


def transfer_threshold_command(
    reference: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="ONNX model whose thresholds were calibrated on people it never saw.",
    ),
    derived: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="ONNX model with no held-out walks of its own."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", file_okay=False, help="Folder for calibration.json (and the clip's)."
    ),
    data: Path = typer.Option(
        ..., "--data", exists=True, file_okay=False, help="OpenGait-layout root of the walks."
    ),
    subjects: str | None = typer.Option(
        None, "--subjects", help="Measure on these subjects' walks (default: every subject)."
    ),
    target_fmr: float = typer.Option(
        1e-3, "--target-fmr", min=1e-6, max=0.5, help="FMR at which the shift is measured."
    ),
    cache: Path | None = typer.Option(
        None, "--cache", file_okay=False, help="Embedding cache of `gaitid eval --cache`."
    ),
) -> None:
    """Calibrate a model that has no held-out people by carrying a calibrated model's thresholds.

    A model trained on every available subject (the shipped one, continued on all of CASIA-B's
    74) leaves no unseen walk to calibrate on. Its thresholds are then the reference's (the
    same recipe's model that held subjects out and was calibrated on them), moved by how far the
    FMR threshold moves from the reference to this model on the same walks, as `gaitid
    quantize` carries a threshold to the int8 file. Writes OUT/calibration.json for `gaitid
    export --threshold-from` and, when the reference has a clip threshold measured as a route
    shift, OUT/clip-calibration.json for `--clip-threshold-from` (the reference's route shift,
    kept). The walks may be ones both models trained on: say which in the model card, and
    check the shift on walks neither saw (e.g. `gaitid synth`) with a second run.
    """
    from gaitid.errors import EXIT_BAD_INPUT
    from gaitid.training.data.errors import DatasetError
    from gaitid.training.evaluation.extract import ModelFileError
    from gaitid.training.evaluation.protocols import ProtocolError

    try:
        records = _transferred_calibrations(reference, derived, data, subjects, target_fmr, cache)
    except (DatasetError, ContractError, ProtocolError, ModelFileError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    out.mkdir(parents=True, exist_ok=True)
    for name, record in records.items():
        (out / name).write_text(json.dumps(record, indent=2) + "\n")
        typer.echo(f"wrote {out / name}: threshold {record['threshold']:.6f}")


def _transferred_calibrations(
    reference: Path,
    derived: Path,
    data: Path,
    subjects: str | None,
    fmr: float,
    cache_dir: Path | None,
) -> dict[str, dict[str, Any]]:
    """``{file name: calibration record}`` of ``derived`` carried from ``reference``."""
    import onnxruntime as ort

    from gaitid.contract import (
        CLIP_THRESHOLD_CALIBRATION_KEY,
        DEFAULT_THRESHOLD_CALIBRATION_KEY,
        read_metadata,
    )
    from gaitid.training.evaluation.protocols import ProtocolError

    raws = [
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        .get_modelmeta()
        .custom_metadata_map
        for path in (reference, derived)
    ]
    metas = [read_metadata(raw) for raw in raws]
    if metas[0].default_threshold is None:
        raise ProtocolError(f"{reference} has no calibrated default_threshold to carry")
    if metas[0].test_time_shifts != metas[1].test_time_shifts:
        raise ProtocolError(
            f"{reference.name} averages the shift set {metas[0].test_time_shifts!r} and "
            f"{derived.name} {metas[1].test_time_shifts!r}: their thresholds are of different "
            "embedding functions"
        )
    measured = _measure_transfer(
        reference, derived, metas[0].default_threshold, data, subjects, fmr, cache_dir
    )
    walks_used = f"{data.resolve().name}, subjects {subjects or 'all'}"
    named = f"reference ({reference.name})"
    typer.echo(
        f"default_threshold {measured.threshold:.6f}: "
        f"{measured.describe(walks_used, reference=named)}"
    )
    base = {
        "model": derived.name,
        "test_time_shifts": metas[1].test_time_shifts,
        "target_fmr": fmr,
        "subjects": list(measured.subjects),
    }
    # the reference's own calibration record (people it never saw) travels with the transfer
    transfer = measured.provenance(
        walks_used, raws[0].get(DEFAULT_THRESHOLD_CALIBRATION_KEY), reference="reference"
    ) | {"reference": metas[0].version}
    records = {
        "calibration.json": {
            **base,
            "probes": "silhouettes",
            "threshold": measured.threshold,
            "transfer": transfer,
        }
    }
    clip_record = json.loads(raws[0].get(CLIP_THRESHOLD_CALIBRATION_KEY) or "{}")
    if metas[0].clip_threshold is not None and "route_shift" in clip_record:
        records["clip-calibration.json"] = {
            **base,
            "probes": clip_record.get("probes", "clip walks"),
            "threshold": measured.moved(metas[0].clip_threshold),
            "route_shift": clip_record["route_shift"],
            "transfer": transfer,
        }
    return records


def model_info_command(
    variant: str = typer.Argument(..., help="Model variant, e.g. paper, lite, tiny."),
    frames: int = typer.Option(30, min=1, help="Sequence length T for the FLOP count."),
    num_classes: int = typer.Option(
        74, min=0, help="Classifier size counted (74 = CASIA-B LT training subjects)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    with_table_ix: bool = typer.Option(
        True,
        "--table-ix/--no-table-ix",
        help="Also build the variant with each of Table IX's branch sets and compare.",
    ),
) -> None:
    """Parameters and FLOPs per component (per frame and per walk) beside Table IX."""
    from gaitid.model.config import VARIANTS

    if variant not in VARIANTS:
        raise typer.BadParameter(f"unknown variant {variant!r}; choose one of {sorted(VARIANTS)}")
    from dataclasses import asdict

    from gaitid.model.info import format_table, model_info, table_ix
    from gaitid.model.registry import resolve_config

    config = resolve_config(variant, num_classes=num_classes)
    info = model_info(config, variant, frames)
    rows = table_ix(config) if with_table_ix else []
    if as_json:
        typer.echo(json.dumps({**info.as_dict(), "table_ix": [asdict(r) for r in rows]}, indent=2))
    else:
        typer.echo(format_table(info, rows))
