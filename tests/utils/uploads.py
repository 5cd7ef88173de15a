"""Factories that encode one silhouette sequence in every upload format, and hostile uploads.

Shared by the core decoding tests and the service tests: each ``encode_*`` turns a uint8
``(T, H, W)`` mask array (0/255) into the bytes a client would send. ``walking_masks`` draws
a small deterministic walker so tests need no real data.
"""

from __future__ import annotations

import bz2
import io
import lzma
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable

import cv2
import numpy as np
import tifffile
from numpy.typing import NDArray
from PIL import Image

from gaitid.training.synth.camera import write_video


def walking_masks(
    frames: int = 8, height: int = 90, width: int = 120, *, seed: int = 0
) -> NDArray[np.uint8]:
    """A ``(T, H, W)`` uint8 0/255 walker: head, torso and two swinging legs, drifting right.

    Shapes are axis-aligned blobs with wide margins, so lossy codecs and resizing keep them
    recognisable; the random seed shifts the start position and phase.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((frames, height, width), np.uint8)
    x0 = int(rng.integers(width // 4, width // 2))
    phase = float(rng.uniform(0, 2 * np.pi))
    top, body_h = height // 8, (height * 3) // 4
    for t in range(frames):
        cx = x0 + t
        swing = round(body_h * 0.15 * float(np.sin(phase + t * 0.8)))
        frame = out[t]
        cv2.circle(frame, (cx, top + body_h // 10), max(2, body_h // 10), 255, -1)
        torso_top, hip = top + body_h // 5, top + body_h // 2
        cv2.rectangle(frame, (cx - body_h // 10, torso_top), (cx + body_h // 10, hip), 255, -1)
        foot_y = top + body_h
        cv2.line(frame, (cx, hip), (cx + swing, foot_y), 255, max(2, body_h // 14))
        cv2.line(frame, (cx, hip), (cx - swing, foot_y), 255, max(2, body_h // 14))
    return out


def _image_bytes(frame: NDArray[np.uint8], fmt: str) -> bytes:
    buffer = io.BytesIO()
    options = {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(frame).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def frame_names(count: int, fmt: str = "png") -> list[str]:
    """Names whose natural order is the frame order but whose plain sort is not."""
    return [f"walk/frame{i}.{fmt}" for i in range(count)]


def encode_zip(frames: NDArray[np.uint8], fmt: str = "PNG") -> bytes:
    """A zip of one image per frame, written in reverse order with unpadded numbers."""
    suffix = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp"}[fmt]
    names = frame_names(len(frames), suffix)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("walk/", b"")
        archive.writestr("__MACOSX/walk/._frame0.png", b"junk")
        archive.writestr("walk/.DS_Store", b"junk")
        for index in reversed(range(len(frames))):
            archive.writestr(names[index], _image_bytes(frames[index], fmt))
    return buffer.getvalue()


def encode_tar(frames: NDArray[np.uint8], fmt: str = "PNG", compression: str = "gz") -> bytes:
    """A tar (``compression`` in "", "gz", "bz2", "xz") of one image per frame, reversed."""
    suffix = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp"}[fmt]
    names = frame_names(len(frames), suffix)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as archive:
        directory = tarfile.TarInfo("walk")
        directory.type = tarfile.DIRTYPE
        archive.addfile(directory)
        for index in reversed(range(len(frames))):
            _add_tar_file(archive, names[index], _image_bytes(frames[index], fmt))
    return buffer.getvalue()


def _add_tar_file(archive: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    archive.addfile(info, io.BytesIO(content))


def encode_npy(array: NDArray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def encode_npz(arrays: dict[str, NDArray] | NDArray) -> bytes:
    """An npz of one array (stored as ``arr_0``) or of several named arrays."""
    buffer = io.BytesIO()
    if isinstance(arrays, np.ndarray):
        np.savez_compressed(buffer, arrays)
    else:
        np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def encode_tiff(frames: NDArray[np.uint8], compression: str | None = None) -> bytes:
    """A multi-page TIFF, one grey page per frame."""
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as writer:
        for frame in frames:
            writer.write(frame, photometric="minisblack", compression=compression)
    return buffer.getvalue()


def encode_video(frames: NDArray[np.uint8], container: str = "avi") -> bytes:
    """An mp4 (mp4v), avi (MJPG) or mkv (FFV1) of the masks as BGR frames, through OpenCV."""
    fourcc = {"mp4": "mp4v", "avi": "MJPG", "mkv": "FFV1"}[container]
    bgr = (cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) for frame in frames)
    return write_video(bgr, fourcc, f".{container}")


def encode_image(frame: NDArray[np.uint8], fmt: str = "PNG") -> bytes:
    return _image_bytes(frame, fmt)


#: Lossless encoders: the decoded walk must equal the .npy one bit for bit.
LOSSLESS: dict[str, Callable[[NDArray[np.uint8]], bytes]] = {
    "npy": encode_npy,
    "npz": encode_npz,
    "zip-png": lambda f: encode_zip(f, "PNG"),
    "zip-bmp": lambda f: encode_zip(f, "BMP"),
    "tar-png": lambda f: encode_tar(f, "PNG", ""),
    "tar.gz-png": lambda f: encode_tar(f, "PNG", "gz"),
    "tar.bz2-bmp": lambda f: encode_tar(f, "BMP", "bz2"),
    "tar.xz-png": lambda f: encode_tar(f, "PNG", "xz"),
    "tiff": encode_tiff,
    "tiff-deflate": lambda f: encode_tiff(f, "zlib"),
    "mkv-ffv1": lambda f: encode_video(f, "mkv"),
}
#: Lossy encoders: equal after thresholding within a documented tolerance.
LOSSY: dict[str, Callable[[NDArray[np.uint8]], bytes]] = {
    "zip-jpeg": lambda f: encode_zip(f, "JPEG"),
    "tar.gz-jpeg": lambda f: encode_tar(f, "JPEG", "gz"),
    "mp4": lambda f: encode_video(f, "mp4"),
    "avi-mjpg": lambda f: encode_video(f, "avi"),
}


# ---------------------------------------------------------------------------- hostile uploads


def zip_with_members(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def zip_bomb(uncompressed_bytes: int) -> bytes:
    """A zip whose single ``.png`` member inflates from zeros (honest headers)."""
    return zip_with_members({"frame0.png": bytes(uncompressed_bytes)})


def zip_lying_about_size(real_bytes: int, declared_bytes: int) -> bytes:
    """A zip whose member declares ``declared_bytes`` in both headers but inflates to more.

    The CRC stays that of the real data, so only a reader that trusts the declared size
    without bounding what it inflates would accept it.
    """
    content = bytes(real_bytes)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = compressor.compress(content) + compressor.flush()
    crc = zlib.crc32(content)
    name = b"frame0.png"
    local = struct.pack(
        "<4sHHHHHIIIHH",
        b"PK\x03\x04",
        20,
        0,
        8,
        0,
        0,
        crc,
        len(payload),
        declared_bytes,
        len(name),
        0,
    )
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(payload),
        declared_bytes,
        len(name),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    body = local + name + payload
    directory = central + name
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(directory), len(body), 0)
    return body + directory + end


def tar_with(entries: list[tarfile.TarInfo], contents: dict[str, bytes] | None = None) -> bytes:
    """A gzipped tar of hand-built entries (links, devices, odd names)."""
    contents = contents or {}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info in entries:
            content = contents.get(info.name)
            if content is not None:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
            else:
                archive.addfile(info)
    return buffer.getvalue()


def npy_with_header(header: str, payload: bytes = b"") -> bytes:
    """A version 1.0 ``.npy`` with a hand-written header dict (lies about shape/dtype)."""
    text = header + " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1") + payload


def tar_bomb(member_bytes: int, compression: str = "bz2", *, declared: int | None = None) -> bytes:
    """A compressed tar whose one ``frame0.png`` member is ``member_bytes`` of zeros.

    Compressed chunk by chunk, so building a large bomb never holds it whole. ``declared``
    writes a different size into the member header and stops after the header (a tar that
    announces more than it could be allowed to hold).
    """
    info = tarfile.TarInfo("frame0.png")
    info.size = member_bytes if declared is None else declared
    compressor = {
        "gz": lambda: zlib.compressobj(9, zlib.DEFLATED, 31),
        "bz2": lambda: bz2.BZ2Compressor(9),
        "xz": lambda: lzma.LZMACompressor(),
    }[compression]()
    parts = [compressor.compress(info.tobuf(format=tarfile.GNU_FORMAT))]
    if declared is None:
        chunk = bytes(1 << 20)
        left = member_bytes
        while left > 0:
            parts.append(compressor.compress(chunk[: min(left, len(chunk))]))
            left -= len(chunk)
        parts.append(compressor.compress(bytes(-member_bytes % 512 + 1024)))  # padding + end
    parts.append(compressor.flush())
    return b"".join(parts)
