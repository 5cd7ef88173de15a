"""The fast medians give NumPy's values to the bit: the segmentation's masks depend on them."""

from __future__ import annotations

import numpy as np
import pytest

from gaitid import medians
from gaitid.medians import median, plane_lower_median, plane_median


def _noise_like_a_frame_difference(rng: np.random.Generator, size: int) -> np.ndarray:
    """Mostly small values with many ties and a bright minority, as a frame's difference."""
    values = np.abs(rng.normal(0, 4, size)).round(1)
    values[rng.random(size) < 0.1] += 90
    return values.astype(np.float32)


@pytest.mark.parametrize("size", [1, 2, 7, 4095, 4096, 4097, 76_800, 307_200])
def test_median_equals_numpys(size: int) -> None:
    rng = np.random.default_rng(size)
    for values in (
        _noise_like_a_frame_difference(rng, size),
        rng.random(size).astype(np.float32),
        np.full(size, 3.5, np.float32),
    ):
        expected = np.median(values)
        got = median(values)
        assert got == expected and type(got) is type(expected)


def test_median_of_an_ordering_the_subsample_misjudges_is_still_exact() -> None:
    # every value the strided subsample reads is huge, so its bracket misses the middle
    values = np.zeros(200_000, np.float32)
    values[:: values.size // medians._SUBSAMPLE] = 1e6
    values[1::7] = -1.0
    assert median(values) == np.median(values) == 0.0


@pytest.mark.parametrize("count", [3, 4, 63, 64, 300])
def test_plane_median_equals_numpys_along_the_first_axis(count: int) -> None:
    rng = np.random.default_rng(count)
    samples = rng.integers(0, 256, (count, 9, 11, 3), dtype=np.uint8)
    samples[:, :3] = 200  # ties everywhere in some rows
    samples[: count // 2, 3:5] = 0
    got = plane_median(samples)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.median(samples, axis=0))


def test_plane_lower_median_skips_the_hidden_samples() -> None:
    rng = np.random.default_rng(1)
    samples = rng.integers(0, 256, (64, 6, 7, 3), dtype=np.uint8)
    samples[:, 1] = 255  # visible samples at the value hidden ones are set to
    hidden = rng.random(samples.shape[:3]) < 0.6  # a hidden pixel hides its three channels
    hidden[:, 0, 0] = True  # never visible
    picked, visible = plane_lower_median(samples, hidden)
    for index in np.ndindex(*samples.shape[1:]):
        pixel_hidden = hidden[(slice(None), *index[:2])]
        shown = np.sort(samples[(slice(None), *index)][~pixel_hidden])
        assert visible[index[:2]] == (shown.size > 0)
        if shown.size:
            assert picked[index] == shown[(shown.size - 1) // 2]
