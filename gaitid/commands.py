"""Core subcommands of the ``gaitid`` CLI (torch-free).

``gaitid preprocess`` runs exactly the decoding, segmentation (for camera footage) and
pretreatment the service applies to an upload, so users can inspect what the model will see
(``--preview`` draws it).
"""

from __future__ import annotations

from pathlib import Path

import typer

from gaitid.errors import EXIT_BAD_INPUT
from gaitid.formats import SUPPORTED_FORMATS


def preprocess(
    src: Path = typer.Argument(
        ...,
        exists=True,
        resolve_path=True,
        help=f"A file in any upload format ({SUPPORTED_FORMATS}) or a folder of PNG/JPEG/BMP "
        "frames.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", resolve_path=True, help="Where to write the (T, 64, 44) uint8 .npy."
    ),
    min_frames: int = typer.Option(
        1, "--min-frames", min=1, help="Fail when fewer frames are usable."
    ),
    input_kind: str = typer.Option(
        "auto",
        "--input",
        help="auto (tell silhouettes from camera footage), silhouettes, or video.",
    ),
    background: Path | None = typer.Option(
        None,
        "--background",
        exists=True,
        dir_okay=False,
        resolve_path=True,
        help="Empty-scene frame of the camera (needed when the person walks towards it).",
    ),
    segmenter: Path | None = typer.Option(
        None,
        "--segmenter",
        exists=True,
        dir_okay=False,
        resolve_path=True,
        envvar="GAITID_SEGMENTER_PATH",
        help="ONNX person-segmentation model for footage (contract: gaitid.segment).",
    ),
    preview: Path | None = typer.Option(
        None,
        "--preview",
        resolve_path=True,
        help="Write a picture of sampled frames, their masks and the final silhouettes.",
    ),
) -> None:
    """Turn silhouettes or a camera clip into the network input (T, 64, 44) uint8 (.npy)."""
    import numpy as np

    from gaitid import preview as strip
    from gaitid.decode import decode_image, decode_path
    from gaitid.errors import GaitidError, InvalidSequenceError
    from gaitid.segment import (
        INPUT_CHOICES,
        FrontEnd,
        OnnxPersonSegmenter,
        describe_dropped_frames,
    )

    if out.suffix.lower() != ".npy":
        raise typer.BadParameter(f"{out} must end in .npy", param_hint="--out")
    if input_kind not in INPUT_CHOICES:
        raise typer.BadParameter(f"choose one of {', '.join(INPUT_CHOICES)}", param_hint="--input")
    # the recorder also collects every dropped frame's reason, printed below
    recorder = strip.PreviewRecorder()
    try:
        front_end = FrontEnd(
            input=input_kind,  # checked against INPUT_CHOICES above
            background=(
                None
                if background is None
                else decode_image(background.read_bytes(), "--background")
            ),
            segmenter=None if segmenter is None else OnnxPersonSegmenter(segmenter),
            observer=recorder,
        )
        result = decode_path(src, min_frames=min_frames, front_end=front_end)
    except (InvalidSequenceError, GaitidError) as exc:
        typer.echo(f"error: {src}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, result.frames)
    reasons = ", ".join(f"{k}={v}" for k, v in result.drops.items()) or "none"
    typer.echo(
        f"input: {result.kind}; frames: total={result.total} used={result.used} "
        f"dropped={result.dropped} ({reasons}) -> {out} {tuple(result.frames.shape)} uint8"
    )
    if recorder.reasons:
        typer.echo(f"dropped frames: {describe_dropped_frames(recorder.reasons)}")
    if preview is not None:
        strip.write(preview, strip.render(result, recorder))
        typer.echo(f"preview -> {preview}")


def register(app: typer.Typer) -> None:
    """Add the core commands to ``app``."""
    app.command("preprocess")(preprocess)
