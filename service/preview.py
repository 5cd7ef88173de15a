"""A preview of an upload without enrolling it: how it was read and what the model would see.

The same reading as ``/enroll`` and ``/identify`` (``walks.uploads``: the same limits, decode
slots, cancellation and errors), observed by the recorder of ``gaitid preprocess
--preview`` and drawn by the same :func:`gaitid.preview.render`, so the strip an operator
checks in the console is the strip the CLI writes. Nothing is embedded or stored: an
operator can look before committing an enrolment.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import anyio
import cv2

from gaitid.preview import PeopleRecorder, PreviewRecorder, render, render_people
from gaitid.service.schemas import PreviewResponse
from gaitid.service.state import ServiceState
from gaitid.service.walks.embedding import input_report
from gaitid.service.walks.uploads import Decoded, Upload, decode


async def preview(state: ServiceState, upload: Upload) -> PreviewResponse:
    """Read ``upload`` as enrolment would and draw the strip; raises the upload errors (4xx).

    With ``people="all"`` the strip is that of a clip with several people
    (:func:`gaitid.preview.render_people`); otherwise that of the one walk (the ``track``
    chosen, or the person with the most usable frames).
    """
    every_person = upload.choice.people == "all"
    recorder = PeopleRecorder() if every_person else PreviewRecorder()
    decoded = await decode(
        upload,
        state.settings,
        state.decode_slots,
        state.metrics,
        state.segmenter,
        observer=recorder,
    )
    strip = await anyio.to_thread.run_sync(_strip_png, decoded, recorder)
    report = input_report(decoded.sequence)
    if every_person:
        report = report.model_copy(update={"track": None})  # everyone, not one of them
    return PreviewResponse(
        input=report,
        frames_used=decoded.sequence.used,
        strip="data:image/png;base64," + base64.b64encode(strip.png).decode("ascii"),
        strip_width=strip.width,
        strip_height=strip.height,
    )


@dataclass(frozen=True)
class _Strip:
    png: bytes
    width: int
    height: int


def _strip_png(decoded: Decoded, recorder: PreviewRecorder | PeopleRecorder) -> _Strip:
    """The strip of ``gaitid.preview`` as PNG bytes (drawn in RGB, BGR for OpenCV)."""
    if isinstance(recorder, PeopleRecorder) and recorder.people:
        image = render_people(decoded.everyone, recorder)
    else:
        image = render(
            decoded.sequence, recorder if isinstance(recorder, PreviewRecorder) else None
        )
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok, "PNG encoding of a uint8 RGB image cannot fail"
    height, width = image.shape[:2]
    return _Strip(encoded.tobytes(), width, height)
