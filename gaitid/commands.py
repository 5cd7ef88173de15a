"""Core subcommands of the ``gaitid`` CLI (torch-free).

``gaitid preprocess`` runs exactly the decoding and pretreatment the service applies to an
upload, so users can inspect what the model will see.
"""

from __future__ import annotations

from pathlib import Path

import typer

#: Exit code for bad input data (the same code typer uses for bad command-line usage).
EXIT_BAD_INPUT = 2


def preprocess(
    src: Path = typer.Argument(
        ...,
        exists=True,
        resolve_path=True,
        help="A file in any upload format (zip/tar of frames, .npy, .npz, video, TIFF) "
        "or a folder of PNG/JPEG/BMP frames.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", resolve_path=True, help="Where to write the (T, 64, 44) uint8 .npy."
    ),
    min_frames: int = typer.Option(
        1, "--min-frames", min=1, help="Fail when fewer frames have enough foreground."
    ),
) -> None:
    """Turn raw silhouettes into the network input (T, 64, 44) uint8 and save it as .npy."""
    import numpy as np

    from gaitid.decode import decode_path
    from gaitid.errors import InvalidSequenceError

    if out.suffix.lower() != ".npy":
        raise typer.BadParameter(f"{out} must end in .npy", param_hint="--out")
    try:
        result = decode_path(src, min_frames=min_frames)
    except InvalidSequenceError as exc:
        typer.echo(f"error: {src}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, result.frames)
    typer.echo(
        f"frames: total={result.total} used={result.used} dropped={result.dropped} "
        f"-> {out} {tuple(result.frames.shape)} uint8"
    )


def register(app: typer.Typer) -> None:
    """Add the core commands to ``app``."""
    app.command("preprocess")(preprocess)
