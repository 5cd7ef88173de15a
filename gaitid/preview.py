"""A picture of what the model will see: ``gaitid preprocess CLIP --preview strip.png``.

Columns are frames sampled evenly over the walk. For camera footage the rows are the frame
(at the working size) with the tracked person's mask tinted over it, the mask alone, and the
final 64x44 silhouette; for silhouette input, only the final silhouettes. A person can check
at a glance that the right person was followed and whole. When frames were dropped, a last
row shows some of them (evenly over the dropped ones), each labelled with its frame number and
the reason (``gaitid.segment.DROP_REASONS``), so the reader can agree or disagree with it.

For a clip of several people (``--people all``), :func:`render_people` tints each person in
their own colour with their track number, over frames of the whole clip, then shows one row of
silhouettes per person.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import cv2
import numpy as np
from numpy.typing import NDArray

from gaitid.preprocess import FrameKey, PreprocessedSequence
from gaitid.segment import Segmentation

ROW_HEIGHT: Final = 128
_TINT: Final = np.array([255, 40, 40], np.float32)  # red, RGB


class PreviewRecorder:
    """A segmentation observer (``FrontEnd.observer``) that keeps what the strip shows."""

    def __init__(self, columns: int = 8) -> None:
        self.columns = columns
        self.frames: dict[FrameKey, NDArray[np.uint8]] = {}
        self.masks: list[tuple[FrameKey, NDArray[np.uint8]]] = []
        #: every dropped frame's reason, by frame key, in frame order
        self.reasons: dict[FrameKey, str] = {}
        self.dropped: list[tuple[FrameKey, NDArray[np.uint8]]] = []

    def __call__(
        self, frames: Sequence[tuple[FrameKey, NDArray[np.uint8]]], found: Segmentation
    ) -> None:
        picks = _evenly(len(found.masks), self.columns)
        self.masks = [found.masks[i] for i in picks]
        wanted = {key for key, _mask in self.masks}
        self.frames = {key: frame for key, frame in frames if key in wanted}
        self.reasons = dict(sorted(found.reasons.items()))
        dropped_keys = list(self.reasons)
        shown = {dropped_keys[i] for i in _evenly(len(dropped_keys), self.columns)}
        self.dropped = [(key, frame) for key, frame in frames if key in shown]


def render(result: PreprocessedSequence, recorder: PreviewRecorder | None) -> NDArray[np.uint8]:
    """The strip as an RGB image."""
    columns = recorder.columns if recorder is not None else 8
    silhouettes = [result.frames[i] for i in _evenly(result.used, columns)]
    rows: list[list[NDArray[np.uint8]]] = []
    if recorder is not None and recorder.masks:
        overlays, masks = [], []
        for key, mask in recorder.masks:
            frame = recorder.frames[key].astype(np.float32)
            person = mask > 0
            frame[person] = 0.5 * frame[person] + 0.5 * _TINT
            overlays.append(frame.astype(np.uint8))
            masks.append(np.repeat(mask[:, :, None], 3, axis=2))
        rows += [overlays, masks]
    rows.append([np.repeat(s[:, :, None], 3, axis=2) for s in silhouettes])
    if recorder is not None and recorder.dropped:
        rows.append(
            [_labelled(frame, f"{key}: {recorder.reasons[key]}") for key, frame in recorder.dropped]
        )
    return _stack(rows)


#: Each person's colour in a strip of several people (``gaitid preprocess --people all``), RGB.
TRACK_COLOURS: Final = (
    (255, 40, 40),
    (40, 120, 255),
    (40, 200, 80),
    (255, 190, 0),
    (200, 60, 255),
    (0, 210, 210),
)


class PeopleRecorder:
    """A segmentation observer for every person of a clip (``gaitid.segment.read_walks``
    calls it once per person): keeps the clip's working frames and each person's masks."""

    def __init__(self, columns: int = 8) -> None:
        self.columns = columns
        self.frames: Sequence[tuple[FrameKey, NDArray[np.uint8]]] = ()
        self.people: list[Segmentation] = []

    def __call__(
        self, frames: Sequence[tuple[FrameKey, NDArray[np.uint8]]], found: Segmentation
    ) -> None:
        self.frames = frames
        self.people.append(found)


def render_people(
    results: Sequence[PreprocessedSequence], recorder: PeopleRecorder
) -> NDArray[np.uint8]:
    """The strip of a clip with several people: frames sampled over the clip with each
    person's mask tinted and boxed in their own colour (``TRACK_COLOURS``), their number over
    the box, then one row per person of the silhouettes the model sees, led by a tile of
    their colour and number."""
    picks = _evenly(len(recorder.frames), recorder.columns)
    masks = [dict(found.masks) for found in recorder.people]
    overlays = []
    for index in picks:
        key, frame = recorder.frames[index]
        tile = frame.astype(np.float32)
        labels = []
        for number, (found, by_key) in enumerate(zip(recorder.people, masks, strict=True)):
            mask = by_key.get(key)
            if mask is None:
                continue
            colour = np.array(_colour(number), np.float32)
            person = mask > 0
            tile[person] = 0.45 * tile[person] + 0.55 * colour
            ys, xs = np.nonzero(person)
            box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
            labels.append((str(found.track), box, _colour(number)))
        image = np.ascontiguousarray(tile.astype(np.uint8))
        scale = image.shape[0] / ROW_HEIGHT  # the tile is shown ROW_HEIGHT rows high
        size, thick = 0.45 * scale, max(1, round(scale))
        for text, (x0, y0, x1, y1), colour_rgb in labels:
            cv2.rectangle(image, (x0 - 2, y0 - 2), (x1 + 2, y1 + 2), colour_rgb, thick)
            origin = (x0, max(round(12 * scale), y0 - round(4 * scale)))
            font = cv2.FONT_HERSHEY_SIMPLEX
            cv2.putText(image, text, origin, font, size, (0, 0, 0), thick + 2)
            cv2.putText(image, text, origin, font, size, colour_rgb, thick)
        overlays.append(image)
    rows = [overlays] if overlays else []
    for number, (found, result) in enumerate(zip(recorder.people, results, strict=True)):
        badge = np.zeros((64, 24, 3), np.uint8)
        badge[:] = _colour(number)
        cv2.putText(badge, str(found.track), (4, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 2)
        picks_t = _evenly(result.used, recorder.columns)
        tiles = [np.repeat(result.frames[i][:, :, None], 3, axis=2) for i in picks_t]
        rows.append([badge, *tiles])
    return _stack(rows)


def _colour(number: int) -> tuple[int, int, int]:
    return TRACK_COLOURS[number % len(TRACK_COLOURS)]


def write(path: Path, image: NDArray[np.uint8]) -> None:
    """Save the strip (PNG or JPEG by the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write the preview to {path} (use a .png or .jpg name)")


def _labelled(frame: NDArray[np.uint8], text: str) -> NDArray[np.uint8]:
    """A dropped frame, dimmed, with its number and reason written across the top."""
    scale = frame.shape[0] / ROW_HEIGHT  # the tile is shown ROW_HEIGHT rows high
    tile = (frame.astype(np.float32) * 0.6).astype(np.uint8)
    size = 0.35 * scale
    thick = max(1, round(scale))
    origin = (max(1, round(3 * scale)), max(8, round(12 * scale)))
    cv2.putText(tile, text, origin, cv2.FONT_HERSHEY_SIMPLEX, size, (0, 0, 0), thick + 2)
    cv2.putText(tile, text, origin, cv2.FONT_HERSHEY_SIMPLEX, size, (255, 230, 80), thick)
    return tile


def _stack(rows: list[list[NDArray[np.uint8]]]) -> NDArray[np.uint8]:
    """Rows of tiles, one strip each, stacked and padded on the right to the widest."""
    strips = [_row(row) for row in rows]
    width = max(strip.shape[1] for strip in strips)
    padded = [np.pad(strip, ((0, 0), (0, width - strip.shape[1]), (0, 0))) for strip in strips]
    return np.concatenate(padded, axis=0)


def _row(tiles: list[NDArray[np.uint8]]) -> NDArray[np.uint8]:
    scaled = []
    for tile in tiles:
        width = max(1, round(tile.shape[1] * ROW_HEIGHT / tile.shape[0]))
        resized = cv2.resize(tile, (width, ROW_HEIGHT), interpolation=cv2.INTER_NEAREST)
        scaled.append(np.pad(np.asarray(resized, np.uint8), ((0, 0), (0, 4), (0, 0))))
    return np.concatenate(scaled, axis=1)


def _evenly(count: int, columns: int) -> list[int]:
    if count <= 0:
        return []
    return sorted(set(np.linspace(0, count - 1, min(count, columns)).round().astype(int).tolist()))
