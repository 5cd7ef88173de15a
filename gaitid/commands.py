"""Core subcommands of the ``gaitid`` CLI (torch-free).

``gaitid preprocess`` runs exactly the decoding, segmentation (for camera footage) and
pretreatment the service applies to an upload, so users can inspect what the model will see
(``--preview`` draws it).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gaitid.errors import EXIT_BAD_INPUT
from gaitid.formats import SUPPORTED_FORMATS

if TYPE_CHECKING:
    from gaitid.preprocess import PreprocessedSequence
    from gaitid.preview import PeopleRecorder


def preprocess(
    src: Path = typer.Argument(
        ...,
        exists=True,
        resolve_path=True,
        help=f"A file in any upload format ({SUPPORTED_FORMATS}) or a folder of PNG/JPEG/BMP "
        "frames.",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        resolve_path=True,
        help="Where to write the (T, 64, 44) uint8 .npy; with --people all, a folder that gets "
        "one track-N.npy per person.",
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
        help="Write a picture of sampled frames, their masks and the final silhouettes (with "
        "--people all: every person in their own colour).",
    ),
    people: str = typer.Option(
        "one",
        "--people",
        help="Footage with several people: one (the person with the most usable frames, or "
        "--track) or all (every person followed).",
    ),
    track: int | None = typer.Option(
        None, "--track", min=1, help="Footage with several people: this person's walk."
    ),
) -> None:
    """Turn silhouettes or a camera clip into the network input (T, 64, 44) uint8 (.npy)."""
    import numpy as np

    from gaitid import preview as strip
    from gaitid.decode import decode_image, decode_path, decode_path_people
    from gaitid.errors import GaitidError, InvalidSequenceError
    from gaitid.segment import (
        INPUT_CHOICES,
        PEOPLE_CHOICES,
        FrontEnd,
        OnnxPersonSegmenter,
        describe_dropped_frames,
    )

    if input_kind not in INPUT_CHOICES:
        raise typer.BadParameter(f"choose one of {', '.join(INPUT_CHOICES)}", param_hint="--input")
    if people not in PEOPLE_CHOICES:
        raise typer.BadParameter(
            f"choose one of {', '.join(PEOPLE_CHOICES)}", param_hint="--people"
        )
    every_person = people == "all"
    if every_person and track is not None:
        raise typer.BadParameter("--track picks one person; --people all writes everyone's")
    if not every_person and out.suffix.lower() != ".npy":
        raise typer.BadParameter(f"{out} must end in .npy", param_hint="--out")
    if every_person and out.suffix:
        raise typer.BadParameter(f"{out}: with --people all, a folder", param_hint="--out")
    # the recorders also collect every dropped frame's reason, printed below
    recorder = strip.PreviewRecorder()
    everyone = strip.PeopleRecorder()
    try:
        front_end = FrontEnd(
            input=input_kind,  # checked against INPUT_CHOICES above
            background=(
                None
                if background is None
                else decode_image(background.read_bytes(), "--background")
            ),
            segmenter=None if segmenter is None else OnnxPersonSegmenter(segmenter),
            observer=everyone if every_person else recorder,
            track=track,
        )
        if every_person:
            results = decode_path_people(src, min_frames=min_frames, front_end=front_end)
        else:
            result = decode_path(src, min_frames=min_frames, front_end=front_end)
    except (InvalidSequenceError, GaitidError) as exc:
        typer.echo(f"error: {src}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from exc
    if every_person:
        _write_people(out, results, everyone, preview)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, result.frames)
    reasons = _drop_counts(result)
    typer.echo(
        f"input: {result.kind}; frames: total={result.total} used={result.used} "
        f"dropped={result.dropped} ({reasons}) -> {out} {tuple(result.frames.shape)} uint8"
    )
    if recorder.reasons:
        typer.echo(f"dropped frames: {describe_dropped_frames(recorder.reasons)}")
    if preview is not None:
        strip.write(preview, strip.render(result, recorder))
        typer.echo(f"preview -> {preview}")


def _write_people(
    out: Path,
    results: list[PreprocessedSequence],
    recorder: PeopleRecorder,
    preview: Path | None,
) -> None:
    """``--people all``: one ``track-N.npy`` per person, a line each, and the strip."""
    import numpy as np

    from gaitid import preview as strip
    from gaitid.segment import describe_dropped_frames

    out.mkdir(parents=True, exist_ok=True)
    found_by_track = {found.track: found for found in recorder.people}
    typer.echo(f"input: {results[0].kind}; people: {len(results)}")
    for result in results:
        number = 1 if result.person is None else result.person.track
        path = out / f"track-{number}.npy"
        np.save(path, result.frames)
        where = ""
        if result.person is not None:
            x, y, w, h = result.person.box
            first, last = result.person.first_frame, result.person.last_frame
            where = f" frames {first}-{last}, box x={x} y={y} w={w} h={h};"
        reasons = _drop_counts(result)
        typer.echo(
            f"track {number}:{where} used={result.used} dropped={result.dropped} ({reasons}) "
            f"-> {path} {tuple(result.frames.shape)} uint8"
        )
        found = found_by_track.get(number)
        if found is not None and found.reasons:
            typer.echo(f"  dropped frames: {describe_dropped_frames(found.reasons)}")
    if preview is not None:
        strip.write(preview, strip.render_people(results, recorder))
        typer.echo(f"preview -> {preview}")


def _drop_counts(result: PreprocessedSequence) -> str:
    """``"no_person=3, overlap=12"`` (or ``"none"``) for the printed lines."""
    return ", ".join(f"{k}={v}" for k, v in result.drops.items()) or "none"


def register(app: typer.Typer) -> None:
    """Add the core commands to ``app``."""
    app.command("preprocess")(preprocess)
