"""Video (mp4 / mov, avi, mkv / webm) of masks or camera footage, through OpenCV's FFmpeg
backend. FFmpeg reads from a file, so the upload is written to a temporary folder that is
removed when decoding ends; frames come out RGB like every other source. OpenCV is imported
when a video arrives."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from numpy.typing import NDArray

from gaitid.decode.work import Source, Work
from gaitid.errors import CorruptUploadError
from gaitid.preprocess import FrameKey


def _video_suffix(data: bytes) -> str:
    if data[4:8] == b"ftyp":
        return ".mp4"
    return ".avi" if data[:4] == b"RIFF" else ".mkv"


def open_upload(data: bytes, work: Work) -> Source:
    return Source(_video_frames(data, work))


def _video_frames(data: bytes, work: Work) -> Iterator[tuple[FrameKey, NDArray]]:
    """Decode a mask video frame by frame through OpenCV (FFmpeg needs a real file)."""
    import cv2

    with tempfile.TemporaryDirectory(prefix="gaitid-video-") as folder:
        path = Path(folder) / f"upload{_video_suffix(data)}"
        path.write_bytes(data)
        capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        try:
            if not capture.isOpened():
                raise CorruptUploadError(
                    "the video cannot be opened; send an mp4/avi/mkv of mask frames"
                )
            width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
            height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
            work.check_frame(height, width, "each video frame")
            decoded = 0
            while True:
                work.check_total(work.pixels + height * width, "the video")
                ok, frame = capture.read()
                if not ok or frame is None:
                    break
                yield decoded, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # every source is RGB
                decoded += 1
            if decoded == 0:
                raise CorruptUploadError("the video has no decodable frames")
        finally:
            capture.release()
