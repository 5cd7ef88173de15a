"""Upload decoding: every format gives the same walk, every malformed upload a typed error."""

from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from gaitid.decode import (
    DecodeLimits,
    decode_path,
    decode_upload,
    detect_format,
    natural_key,
)
from gaitid.decode.work import Work
from gaitid.errors import (
    CorruptUploadError,
    TooFewFramesError,
    UnsafeArchiveError,
    UploadContentError,
    UploadError,
    UploadFormatError,
    UploadTooLargeError,
)
from tests.utils import uploads

#: Lossy codecs (JPEG q95, mp4v, MJPG) may flip a few edge pixels after thresholding at 128.
LOSSY_MIN_IOU = 0.98


@pytest.fixture(scope="module")
def masks() -> np.ndarray:
    return uploads.walking_masks(6, 90, 120, seed=11)


@pytest.fixture(scope="module")
def expected(masks: np.ndarray) -> np.ndarray:
    return decode_upload(uploads.encode_npy(masks)).frames


@pytest.mark.parametrize("name", sorted(uploads.LOSSLESS))
def test_lossless_formats_decode_to_the_same_array(
    name: str, masks: np.ndarray, expected: np.ndarray
) -> None:
    result = decode_upload(uploads.LOSSLESS[name](masks))
    assert result.frames.dtype == np.uint8 and result.frames.shape == (6, 64, 44)
    assert np.array_equal(result.frames, expected)
    assert (result.total, result.dropped) == (6, 0)


@pytest.mark.parametrize("name", sorted(uploads.LOSSY))
def test_lossy_formats_agree_after_thresholding(
    name: str, masks: np.ndarray, expected: np.ndarray
) -> None:
    result = decode_upload(uploads.LOSSY[name](masks))
    assert result.frames.shape == expected.shape
    ours, reference = result.frames >= 128, expected >= 128
    iou = (ours & reference).sum() / (ours | reference).sum()
    assert iou >= LOSSY_MIN_IOU


def test_value_conventions_in_npy_agree(masks: np.ndarray, expected: np.ndarray) -> None:
    for array in (masks > 0, (masks > 0).astype(np.float32), (masks > 0).astype(np.uint8)):
        assert np.array_equal(decode_upload(uploads.encode_npy(array)).frames, expected)


def test_single_image_is_a_one_frame_walk(masks: np.ndarray, expected: np.ndarray) -> None:
    assert np.array_equal(decode_upload(uploads.encode_image(masks[0])).frames, expected[:1])


def test_frames_follow_natural_order_not_archive_order(masks: np.ndarray) -> None:
    # encode_zip writes frame9..frame0 in reverse; plain sorting would put frame10 before frame2
    twelve = uploads.walking_masks(12, 90, 120, seed=12)
    ordered = decode_upload(uploads.encode_npy(twelve)).frames
    assert np.array_equal(decode_upload(uploads.encode_zip(twelve)).frames, ordered)
    assert np.array_equal(decode_upload(uploads.encode_tar(twelve)).frames, ordered)
    names = ["f10.png", "f2.png", "F1.png", "f2a.png", "a/f3.png"]
    assert sorted(names, key=natural_key) == ["a/f3.png", "F1.png", "f2.png", "f2a.png", "f10.png"]


def test_npz_with_several_arrays_uses_the_documented_key(masks: np.ndarray) -> None:
    expected = decode_upload(uploads.encode_npy(masks)).frames
    data = uploads.encode_npz({"silhouettes": masks, "labels": np.arange(3)})
    assert np.array_equal(decode_upload(data).frames, expected)
    with pytest.raises(UploadContentError, match="silhouettes"):
        decode_upload(uploads.encode_npz({"a": masks, "b": masks}))


def test_already_normalised_upload_passes_through(rng: np.random.Generator) -> None:
    normalised = rng.integers(0, 256, size=(4, 64, 44), dtype=np.uint8)
    normalised[:, 20:40, 10:30] = 255  # enough foreground
    for data in (uploads.encode_npy(normalised), uploads.encode_zip(normalised)):
        assert np.array_equal(decode_upload(data).frames, normalised)


def test_folder_and_file_paths(tmp_path: Path, masks: np.ndarray, expected: np.ndarray) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(masks):
        Image.fromarray(frame).save(folder / f"{i}.png")
    (folder / ".hidden.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    assert np.array_equal(decode_path(folder).frames, expected)
    npy = tmp_path / "walk.npy"
    npy.write_bytes(uploads.encode_npy(masks))
    assert np.array_equal(decode_path(npy).frames, expected)
    with pytest.raises(FileNotFoundError):
        decode_path(tmp_path / "missing.npy")


def test_a_folder_of_mixed_frame_sizes_is_pretreated(tmp_path: Path) -> None:
    Image.fromarray(uploads.walking_masks(1, 90, 120)[0]).save(tmp_path / "1.png")
    Image.fromarray(uploads.walking_masks(1, 60, 80)[0]).save(tmp_path / "2.png")
    assert decode_path(tmp_path).used == 2  # the pretreatment itself copes with mixed sizes


def test_misnamed_upload_is_decoded_by_content(masks: np.ndarray, expected: np.ndarray) -> None:
    assert detect_format(uploads.encode_npy(masks), "walk.png") == "npy"
    assert np.array_equal(decode_upload(uploads.encode_npy(masks), "walk.png").frames, expected)


def test_decode_limits_reject_unknown_and_bad_settings() -> None:
    with pytest.raises(ValidationError):
        DecodeLimits(max_frame=10)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        DecodeLimits(max_frames=0)
    limits = DecodeLimits()
    with pytest.raises(ValidationError):
        limits.max_frames = 5


# ---------------------------------------------------------------------------- malformed input


def _png_with_size(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR is rewritten to claim ``width x height``."""
    data = bytearray(uploads.encode_image(np.zeros((4, 4), np.uint8)))
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


def _tar_entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def _zip_symlink() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("frame0.png")
        info.external_attr = (0o120777 << 16) | 0
        archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


PNG = uploads.encode_image(uploads.walking_masks(1, 90, 120)[0])
SMALL = DecodeLimits(max_uncompressed_bytes=1 << 20, max_frames=10, max_archive_members=5)

MALFORMED: dict[str, tuple[bytes, type[UploadError], str, DecodeLimits]] = {
    "empty bytes": (b"", UploadFormatError, "empty", DecodeLimits()),
    "unknown format": (b"GIF89a" + bytes(40), UploadFormatError, "unrecognised", DecodeLimits()),
    "corrupt zip": (b"PK\x03\x04" + bytes(60), CorruptUploadError, "zip", DecodeLimits()),
    "truncated zip": (
        uploads.zip_with_members({f"{i}.png": PNG for i in range(3)})[:-30],
        CorruptUploadError,
        "zip",
        DecodeLimits(),
    ),
    "zip bomb over the size limit": (
        uploads.zip_bomb(2 << 20),
        UploadTooLargeError,
        "declares",
        DecodeLimits(max_uncompressed_bytes=1 << 20, max_compression_ratio=5000),
    ),
    "zip bomb ratio": (uploads.zip_bomb(8 << 20), UploadTooLargeError, "expands", DecodeLimits()),
    "zip lying about its size": (
        uploads.zip_lying_about_size(4 << 20, 1000),
        CorruptUploadError,
        "frame0.png",
        SMALL,
    ),
    "zip path traversal": (
        uploads.zip_with_members({"../evil.png": PNG}),
        UnsafeArchiveError,
        "..",
        DecodeLimits(),
    ),
    "zip absolute path": (
        uploads.zip_with_members({"/tmp/evil.png": PNG}),
        UnsafeArchiveError,
        "absolute",
        DecodeLimits(),
    ),
    "zip windows path": (
        uploads.zip_with_members({"C:\\evil.png": PNG}),
        UnsafeArchiveError,
        "absolute",
        DecodeLimits(),
    ),
    "zip symlink": (_zip_symlink(), UnsafeArchiveError, "symbolic link", DecodeLimits()),
    "zip too many members": (
        uploads.zip_with_members({f"{i}.png": PNG for i in range(6)}),
        UploadTooLargeError,
        "members",
        SMALL,
    ),
    "zip without frames": (
        uploads.zip_with_members({"readme.txt": b"hi"}),
        UploadContentError,
        "no PNG",
        DecodeLimits(),
    ),
    "empty zip": (uploads.zip_with_members({}), UploadContentError, "no PNG", DecodeLimits()),
    "zip mixing arrays and images": (
        uploads.zip_with_members({"a.npy": uploads.encode_npy(np.zeros((1, 4, 4))), "b.png": PNG}),
        UploadContentError,
        "mixes",
        DecodeLimits(),
    ),
    "unreadable image member": (
        uploads.zip_with_members({"frame0.png": b"not a png at all"}),
        CorruptUploadError,
        "frame0.png",
        DecodeLimits(),
    ),
    "image over the pixel limit": (
        _png_with_size(100_000, 100_000),
        UploadTooLargeError,
        "pixels",
        DecodeLimits(),
    ),
    "tar symlink": (
        uploads.tar_with([_tar_entry("f.png", tarfile.SYMTYPE, "/etc/passwd")]),
        UnsafeArchiveError,
        "link",
        DecodeLimits(),
    ),
    "tar hard link": (
        uploads.tar_with([_tar_entry("f.png", tarfile.LNKTYPE, "g.png")]),
        UnsafeArchiveError,
        "link",
        DecodeLimits(),
    ),
    "tar device": (
        uploads.tar_with([_tar_entry("dev.png", tarfile.CHRTYPE)]),
        UnsafeArchiveError,
        "device",
        DecodeLimits(),
    ),
    "tar path traversal": (
        uploads.tar_with([_tar_entry("../../etc/x.png")], {"../../etc/x.png": PNG}),
        UnsafeArchiveError,
        "..",
        DecodeLimits(),
    ),
    "tar without frames": (
        uploads.tar_with([_tar_entry("d", tarfile.DIRTYPE)]),
        UploadContentError,
        "no PNG",
        DecodeLimits(),
    ),
    "truncated tar.gz": (
        uploads.encode_tar(uploads.walking_masks(3), "PNG", "gz")[:-40],
        CorruptUploadError,
        "truncated",
        DecodeLimits(),
    ),
    "tar.gz bomb": (
        uploads.tar_with([_tar_entry("f.png")], {"f.png": bytes(3 << 20)}),
        UploadTooLargeError,
        "inflates",
        SMALL,
    ),
    "npy object dtype": (
        uploads.npy_with_header("{'descr': '|O', 'fortran_order': False, 'shape': (2, 4, 4), }"),
        UploadContentError,
        "object",
        DecodeLimits(),
    ),
    "npy complex dtype": (
        uploads.encode_npy(np.ones((2, 4, 4), np.complex64)),
        UploadContentError,
        "complex",
        DecodeLimits(),
    ),
    "npy structured dtype": (
        uploads.encode_npy(np.zeros((2, 4, 4), dtype=[("a", "u1"), ("b", "f4")])),
        UploadContentError,
        "structured",
        DecodeLimits(),
    ),
    "npy string dtype": (
        uploads.encode_npy(np.full((2, 4, 4), "x")),
        UploadContentError,
        "string",
        DecodeLimits(),
    ),
    "npy 2-d": (
        uploads.encode_npy(np.ones((64, 64))),
        UploadContentError,
        "(T, H, W)",
        DecodeLimits(),
    ),
    "npy 5-d": (
        uploads.encode_npy(np.ones((1, 2, 4, 4, 3))),
        UploadContentError,
        "(T, H, W)",
        DecodeLimits(),
    ),
    "npy zero frames": (
        uploads.encode_npy(np.zeros((0, 64, 64), np.uint8)),
        UploadContentError,
        "no frames",
        DecodeLimits(),
    ),
    "npy NaN": (
        uploads.encode_npy(np.full((2, 8, 8), np.nan, np.float32)),
        UploadContentError,
        "NaN",
        DecodeLimits(),
    ),
    "npy inf": (
        uploads.encode_npy(np.full((2, 8, 8), np.inf)),
        UploadContentError,
        "infinity",
        DecodeLimits(),
    ),
    "npy values too large": (
        uploads.encode_npy(np.full((2, 8, 8), 1e6)),
        UploadContentError,
        "allowed ranges",
        DecodeLimits(),
    ),
    "npy absurd frame count": (
        uploads.npy_with_header(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000, 64, 64), }"
        ),
        UploadTooLargeError,
        "frames",
        DecodeLimits(),
    ),
    "npy absurd frame size": (
        uploads.npy_with_header(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 100000, 100000), }"
        ),
        UploadTooLargeError,
        "pixels",
        DecodeLimits(),
    ),
    "npy header lying about its data": (
        uploads.npy_with_header(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 8, 8), }", bytes(10)
        ),
        CorruptUploadError,
        "carries 10 bytes",
        DecodeLimits(),
    ),
    "npy garbage header": (
        b"\x93NUMPY\x01\x00\x10\x00{'descr': nope}\n",
        CorruptUploadError,
        "header",
        DecodeLimits(),
    ),
    "npy unterminated header": (
        b"\x93NUMPY\x01\x00\x1c\x00{'descr': '|u1', 'shape': (2,\n",
        CorruptUploadError,
        "header",
        DecodeLimits(),
    ),
    "npy too many frames": (
        uploads.encode_npy(np.zeros((11, 8, 8), np.uint8)),
        UploadTooLargeError,
        "11 frames",
        SMALL,
    ),
    "npz several anonymous arrays": (
        uploads.encode_npz({"x": np.zeros((1, 4, 4)), "y": np.zeros((1, 4, 4))}),
        UploadContentError,
        "'x'",
        DecodeLimits(),
    ),
    "zip of too many frames": (
        uploads.encode_zip(uploads.walking_masks(11)),
        UploadTooLargeError,
        "frames",
        DecodeLimits(max_frames=10),
    ),
    "corrupt tiff": (b"II*\x00" + bytes(40), CorruptUploadError, "TIFF", DecodeLimits()),
    "corrupt video": (
        b"\x00\x00\x00\x18ftypmp42" + bytes(200),
        CorruptUploadError,
        "video",
        DecodeLimits(),
    ),
    "video of too many frames": (
        uploads.encode_video(uploads.walking_masks(11), "avi"),
        UploadTooLargeError,
        "frames",
        DecodeLimits(max_frames=10),
    ),
    "upload over the byte limit": (PNG, UploadTooLargeError, "bytes", DecodeLimits(max_bytes=100)),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_uploads_raise_typed_errors(case: str) -> None:
    data, error, fragment, limits = MALFORMED[case]
    with pytest.raises(error) as info:
        decode_upload(data, "upload.bin", limits=limits)
    assert fragment in str(info.value)


def test_blank_frames_are_too_few_frames_not_a_crash() -> None:
    with pytest.raises(TooFewFramesError) as info:
        decode_upload(uploads.encode_zip(np.zeros((3, 90, 120), np.uint8)), min_frames=2)
    assert (info.value.usable, info.value.required, info.value.total) == (0, 2, 3)


def test_many_frames_over_the_pixel_limit_in_a_folder(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "0.png")
    with pytest.raises(UploadTooLargeError, match="pixels"):
        decode_path(tmp_path, limits=DecodeLimits(max_pixels_per_frame=2000))


@pytest.mark.parametrize("name", sorted({**uploads.LOSSLESS, **uploads.LOSSY}))
def test_damaged_uploads_never_escape_the_typed_errors(name: str) -> None:
    """Truncations and byte flips of every format either decode or raise a typed error."""
    encoder = {**uploads.LOSSLESS, **uploads.LOSSY}[name]
    data = encoder(uploads.walking_masks(3, 48, 64, seed=13))
    rng = np.random.default_rng(len(data))
    variants = [data[: len(data) // k] for k in (2, 3, 5)] + [data[:-7], data[:40]]
    for _ in range(25):
        damaged = bytearray(data)
        for position in rng.integers(0, len(data), size=4):
            damaged[position] ^= 0xFF
        variants.append(bytes(damaged))
    for variant in variants:
        try:
            result = decode_upload(variant)
        except (UploadError, TooFewFramesError):
            continue
        assert result.frames.dtype == np.uint8 and result.frames.shape[1:] == (64, 44)


@pytest.mark.parametrize("name", sorted(uploads.LOSSLESS))
def test_a_bug_of_ours_is_not_reported_as_a_corrupt_upload(
    name: str, masks: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only what the third-party decoders raise becomes ``CorruptUploadError``; an error in
    our own code inside a decoder (here the per-frame pixel check) surfaces as itself."""

    def broken(*_args: object) -> None:
        raise TypeError("a bug")

    data = uploads.LOSSLESS[name](masks)
    monkeypatch.setattr(Work, "check_frame", broken)
    with pytest.raises(TypeError, match="a bug"):
        decode_upload(data)
