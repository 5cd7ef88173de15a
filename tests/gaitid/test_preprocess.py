"""Silhouette pretreatment: value rules, edge cases and equivalence with OpenGait's recipe."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from gaitid.errors import InvalidSequenceError, TooFewFramesError
from gaitid.preprocess import (
    NormalizedSequence,
    PreprocessedSequence,
    network_sequence,
    normalize_frame,
    normalize_sequence,
    to_network_input,
    value_scale,
)
from tests.utils.uploads import walking_masks


def _pretreat(frames: object, *, min_frames: int = 1) -> PreprocessedSequence:
    """The whole pretreatment, as the decoders run it: normalize, then the network's crop."""
    return network_sequence(normalize_sequence(frames, min_frames=min_frames))  # type: ignore[arg-type]


def opengait_reference(img: np.ndarray, size: int = 64) -> np.ndarray | None:
    """An independent, literal rendition of the standard pretreatment for 0..255 uint8 masks
    (the GaitSet/OpenGait recipe, written out loop by loop as the papers describe it)."""
    if img.sum() <= 10000:
        return None
    row_has = img.sum(axis=1) != 0
    top = int(np.argmax(row_has))
    bottom = len(row_has) - 1 - int(np.argmax(row_has[::-1]))
    img = img[top : bottom + 1]
    width = int(size * img.shape[1] / img.shape[0])
    img = cv2.resize(img, (width, size), interpolation=cv2.INTER_CUBIC)
    total = img.sum()
    running = 0
    centre = 0
    for x in range(img.shape[1]):
        running += int(img[:, x].sum())
        if running > total / 2:
            centre = x
            break
    left, right = centre - size // 2, centre + size // 2
    if left <= 0 or right >= img.shape[1]:
        pad = np.zeros((img.shape[0], size // 2), img.dtype)
        img = np.concatenate([pad, img, pad], axis=1)
        left, right = left + size // 2, right + size // 2
    return img[:, left:right].astype(np.uint8)


def test_matches_reference_pretreatment_on_camera_masks() -> None:
    masks = walking_masks(12, 240, 320, seed=7)
    ours = normalize_sequence(masks).frames
    reference = np.stack([opengait_reference(m) for m in masks])
    # the reference resizes uint8 (fixed-point cubic), we resize float32 and round: +-2 levels
    assert ours.shape == reference.shape == (12, 64, 64)
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 2
    assert np.array_equal(ours >= 128, reference >= 128)


def test_output_is_height_normalised_and_centred() -> None:
    frame = np.zeros((200, 300), np.uint8)
    frame[50:150, 100:150] = 255  # 100 tall, 50 wide -> 64 tall, 32 wide
    out = normalize_frame(frame)
    assert out is not None and out.shape == (64, 64) and out.dtype == np.uint8
    columns = np.flatnonzero(out.max(axis=0) >= 128)
    assert out[0].max() == 255 and out[-1].max() == 255  # rows cropped to the body
    assert len(columns) == 32
    assert abs((columns[0] + columns[-1]) / 2 - 31.5) <= 1  # centred


def test_centre_at_the_border_is_padded_not_clipped() -> None:
    frame = np.zeros((100, 100), np.uint8)
    frame[10:90, 0:20] = 255  # a body touching the left edge of a wide frame
    wide = np.zeros((100, 400), np.uint8)
    wide[10:90, 200:220] = 255  # the same body in the middle of the frame
    assert np.array_equal(normalize_frame(frame), normalize_frame(wide))


def test_value_conventions_give_the_same_frame() -> None:
    mask = walking_masks(1, 90, 120, seed=1)[0] > 0
    expected = normalize_frame(mask.astype(np.uint8) * 255)
    variants = {
        "bool": mask,
        "0/1 uint8": mask.astype(np.uint8),
        "float 0..1": mask.astype(np.float32),
        "float 0..255": mask.astype(np.float64) * 255,
        "uint16": mask.astype(np.uint16) * 65535,
        "int32 0/1": mask.astype(np.int32),
    }
    for name, frame in variants.items():
        assert np.array_equal(normalize_frame(frame), expected), name


def test_colour_frames_use_the_brightest_channel() -> None:
    mask = walking_masks(1, 90, 120, seed=2)[0]
    expected = normalize_frame(mask)
    blue = np.zeros((*mask.shape, 3), np.uint8)
    blue[..., 0] = mask  # a pure blue (BGR) or pure red (RGB) mask: luminance would lose it
    assert np.array_equal(normalize_frame(blue), expected)
    grey3 = np.repeat(mask[..., None], 3, axis=2)
    assert np.array_equal(normalize_frame(grey3), expected)
    assert np.array_equal(normalize_frame(mask[..., None]), expected)


def test_rgba_composites_on_black_and_ignores_constant_alpha() -> None:
    mask = walking_masks(1, 90, 120, seed=2)[0]
    expected = normalize_frame(mask)
    white_everywhere = np.full((*mask.shape, 4), 255, np.uint8)
    white_everywhere[..., 3] = mask  # the shape lives only in the alpha channel
    assert np.array_equal(normalize_frame(white_everywhere), expected)
    opaque = np.concatenate(
        [np.repeat(mask[..., None], 3, 2), np.full((*mask.shape, 1), 255, np.uint8)], 2
    )
    assert np.array_equal(normalize_frame(opaque), expected)


def test_already_normalised_frames_pass_through_unchanged(rng: np.random.Generator) -> None:
    walk = walking_masks(6, 240, 320, seed=3)
    normalised = normalize_sequence(walk).frames  # a realistic pretreated (T, 64, 64) walk
    noisy = normalised.copy()
    noisy[:, 0, :] = rng.integers(0, 256, size=(6, 64), dtype=np.uint8)  # not re-cropped
    out64 = _pretreat(noisy)
    assert np.array_equal(out64.frames, noisy[:, :, 10:54])
    narrow = np.ascontiguousarray(noisy[:, :, 10:54])
    out44 = _pretreat(narrow)
    assert np.array_equal(out44.frames, narrow) and out44.dropped == 0
    assert np.array_equal(normalize_sequence(narrow).frames[:, :, 10:54], narrow)


def test_normalised_bool_and_float_inputs_are_only_rescaled() -> None:
    normalised = normalize_sequence(walking_masks(3, 240, 320, seed=4)).frames >= 128
    out = _pretreat(normalised).frames
    assert np.array_equal(out, normalised[:, :, 10:54].astype(np.uint8) * 255)
    as_float = _pretreat(normalised.astype(np.float32)).frames
    assert np.array_equal(as_float, out)


def test_empty_frames_are_dropped_and_counted() -> None:
    walk = walking_masks(5, 90, 120, seed=5)
    walk[1] = 0
    walk[3, :, :] = 0
    walk[3, 40, 60] = 255  # one pixel of noise is not a person
    result = _pretreat(walk)
    assert (result.total, result.dropped, result.used) == (5, 2, 3)
    assert np.array_equal(result.frames, _pretreat(walk[[0, 2, 4]]).frames)


def test_drop_rule_scales_with_small_frames() -> None:
    frame = np.zeros((40, 30), np.uint8)  # 1200 px: 1% is 12 full pixels
    frame[10:14, 10:13] = 255  # 12 pixels: not more than 1%
    assert normalize_frame(frame) is None
    frame[14, 10] = 255  # 13 pixels
    assert normalize_frame(frame) is not None
    big = np.zeros((240, 320), np.uint8)
    big[100:139, 100:101] = 255  # 39 pixels: OpenGait's sum <= 10000 rule drops it
    assert normalize_frame(big) is None
    big[139, 100] = 255  # 40 pixels = 10200 > 10000
    assert normalize_frame(big) is not None


def test_thin_horizontal_stripes_are_dropped() -> None:
    frame = np.zeros((240, 320), np.uint8)
    frame[100, 0:300] = 255  # a 1-row scan line artefact: 300:1
    assert normalize_frame(frame) is None


def test_faint_codec_noise_does_not_move_the_crop() -> None:
    walk = walking_masks(1, 90, 120, seed=6)
    noisy = walk.copy()
    noisy[0, 0:3, :] = 12  # faint ringing above the head
    assert np.array_equal(_pretreat(noisy).frames, _pretreat(walk).frames)


def test_too_few_frames_reports_usable_and_required() -> None:
    walk = walking_masks(4, 90, 120, seed=8)
    walk[:2] = 0
    with pytest.raises(TooFewFramesError) as info:
        _pretreat(walk, min_frames=3)
    assert (info.value.usable, info.value.required, info.value.total) == (2, 3, 4)
    assert "2 usable" in str(info.value) and "at least 3" in str(info.value)
    with pytest.raises(TooFewFramesError) as empty:
        _pretreat([], min_frames=1)
    assert empty.value.usable == 0


def test_iterables_of_mixed_size_frames_are_accepted() -> None:
    small = walking_masks(2, 90, 120, seed=9)
    large = walking_masks(2, 240, 320, seed=9)
    result = normalize_sequence(iter([small[0], large[0], small[1], large[1]]))
    assert isinstance(result, NormalizedSequence) and result.frames.shape == (4, 64, 64)


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((2, 8, 8), np.complex64), "complex64"),
        (np.array([[["a"]]]), "<U1"),
        (np.zeros((2, 8, 8), dtype=[("a", "u1")]), "not supported"),
        (np.full((2, 8, 8), np.nan, np.float32), "NaN"),
        (np.full((2, 8, 8), np.inf), "NaN or infinity"),
        (np.full((2, 8, 8), -1.0), "negative"),
        (np.full((2, 8, 8), 300.0), "300"),
        (np.full((2, 8, 8), 70000, np.int64), "70000"),
        (np.zeros((8, 8), np.uint8), "(T, H, W)"),
        (np.zeros((2, 8, 8, 2), np.uint8), "C in"),
        (np.zeros((2, 0, 8), np.uint8), "no pixels"),
    ],
)
def test_bad_values_and_shapes_raise_typed_errors(frames: np.ndarray, message: str) -> None:
    with pytest.raises(InvalidSequenceError) as info:
        _pretreat(frames)
    assert message in str(info.value)


def test_value_scale_is_decided_once_per_array() -> None:
    walk = walking_masks(3, 90, 120, seed=10).astype(np.float32)  # 0..255 floats
    walk[1] = np.where(walk[1] > 0, 1.0, 0.0)  # a frame whose max is 1 on the 0..255 scale
    assert value_scale(walk) == 1.0
    assert _pretreat(walk).dropped == 1  # faint, not mistaken for a 0/1 mask


def test_to_network_input_checks_its_input() -> None:
    frames = np.zeros((2, 64, 64), np.uint8)
    assert to_network_input(frames).shape == (2, 64, 44)
    with pytest.raises(InvalidSequenceError, match="shape"):
        to_network_input(np.zeros((2, 64, 44), np.uint8))
    with pytest.raises(InvalidSequenceError, match="uint8"):
        to_network_input(np.zeros((2, 64, 64), np.float32))


def test_min_frames_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_frames"):
        _pretreat(walking_masks(2), min_frames=0)
