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


def test_metadata_built_for_export_reads_back() -> None:
    """Issue 16: one module builds the metadata (export) and checks it (service, eval)."""
    from gaitid.contract import ContractError, build_metadata, read_metadata

    props = build_metadata(
        {"variant": "lite", "version": "1", "training_data": "d", "default_threshold": "0.48"},
        model_config_json="{}",
        fp16=False,
    )
    checked = read_metadata(props)
    assert (checked.embedding_dim, checked.metric, checked.default_threshold) == (
        256,
        "cosine",
        0.48,
    )
    with pytest.raises(ContractError, match="training_data"):
        build_metadata({"variant": "v", "version": "1"}, model_config_json="{}", fp16=False)
    with pytest.raises(ContractError, match="contradicts"):
        build_metadata(
            {"variant": "v", "version": "1", "training_data": "d", "metric": "l2"},
            model_config_json="{}",
            fp16=False,
        )
    for key, value, message in [
        ("embedding_dim", "128", "needs 256"),
        ("metric", "euclidean", "compare by"),
        ("input_size", "64x64", "frames must be"),
        ("default_threshold", "nan", "threshold"),
    ]:
        with pytest.raises(ContractError, match=message):
            read_metadata({**props, key: value})
    with pytest.raises(ContractError, match="lacks"):
        read_metadata({"variant": "x"})


def test_clip_threshold_is_optional_and_checked_like_the_default() -> None:
    """The camera-clip threshold reads back, is absent when not given, and is refused (naming
    its key) unless it is a cosine in [-1, 1]."""
    from gaitid.contract import CLIP_THRESHOLD_KEY, ContractError, build_metadata, read_metadata

    props = build_metadata(
        {"variant": "lite", "version": "1", "training_data": "d", "default_threshold": "0.48"},
        model_config_json="{}",
        fp16=False,
    )
    assert CLIP_THRESHOLD_KEY == "clip_threshold"
    assert read_metadata(props).clip_threshold is None
    both = read_metadata({**props, CLIP_THRESHOLD_KEY: "0.41"})
    assert (both.default_threshold, both.clip_threshold) == (0.48, 0.41)
    assert read_metadata({**props, CLIP_THRESHOLD_KEY: "-1"}).clip_threshold == -1.0
    for bad in ("nan", "1.5", "-1.01", "high", ""):
        with pytest.raises(ContractError, match=rf"clip_threshold='{bad}'.*\[-1, 1\]"):
            read_metadata({**props, CLIP_THRESHOLD_KEY: bad})
    with pytest.raises(ContractError, match="clip_threshold"):
        build_metadata(
            {"variant": "v", "version": "1", "training_data": "d", CLIP_THRESHOLD_KEY: "2"},
            model_config_json="{}",
            fp16=False,
        )


def test_the_test_time_shift_set_reads_back_and_older_models_have_none() -> None:
    """``test_time_shifts`` names a known set; a model without the key averages nothing."""
    from gaitid.contract import TEST_TIME_SHIFTS_KEY, ContractError, build_metadata, read_metadata

    base = {"variant": "lite", "version": "1", "training_data": "d"}
    props = build_metadata(base, model_config_json="{}", fp16=False)
    assert read_metadata(props).test_time_shifts == "none"
    assert read_metadata({**props, TEST_TIME_SHIFTS_KEY: "cross"}).test_time_shifts == "cross"
    for bad in ("diagonal", "", "CROSS"):
        with pytest.raises(ContractError, match=rf"test_time_shifts='{bad}'"):
            read_metadata({**props, TEST_TIME_SHIFTS_KEY: bad})
