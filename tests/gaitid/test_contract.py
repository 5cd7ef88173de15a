"""The embedding contract's chunking of long walks (bounded inference memory)."""

from __future__ import annotations

import numpy as np
import pytest

from gaitid.contract import merge_embeddings, split_walk
from gaitid.distance import l2_normalize


def _walk(frames: int) -> np.ndarray:
    return np.arange(frames, dtype=np.uint8)[:, None, None] * np.ones((1, 64, 44), np.uint8)


@pytest.mark.parametrize(
    ("frames", "limit", "sizes"),
    [(80, 256, [80]), (256, 256, [256]), (257, 256, [128, 129]), (1000, 256, [250] * 4)],
)
def test_split_walk_gives_equal_consecutive_chunks(
    frames: int, limit: int, sizes: list[int]
) -> None:
    walk = _walk(frames)
    chunks = split_walk(walk, limit)
    assert [len(c) for c in chunks] == sizes
    assert np.array_equal(np.concatenate(chunks), walk)  # in order, nothing lost or repeated


def test_split_walk_refuses_a_zero_limit() -> None:
    with pytest.raises(ValueError, match="max_frames"):
        split_walk(_walk(3), 0)


def test_merge_embeddings_is_the_normalised_mean() -> None:
    rng = np.random.default_rng(0)
    vectors = l2_normalize(rng.normal(size=(3, 256)))
    merged = merge_embeddings(vectors)
    assert merged.shape == (256,) and np.isclose(np.linalg.norm(merged), 1.0, atol=1e-6)
    assert np.allclose(merged, l2_normalize(vectors.mean(axis=0)), atol=1e-6)
    assert np.array_equal(merge_embeddings(vectors[:1]), vectors[0])
    with pytest.raises(ValueError):
        merge_embeddings(np.zeros((0, 256), np.float32))
