"""Segmentation-style degradation of training walks, frame-dropping windows, and bf16 choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.typing import NDArray
from pydantic import ValidationError

from gaitid.preprocess import normalize_sequence, to_network_input
from gaitid.training import setup
from gaitid.training.augment import AugmentConfig, degrade_walk
from gaitid.training.config import BatchPipeline
from gaitid.training.sampler import BatchSpec
from gaitid.training.synth.dataset import SynthConfig, render_walk, subject_identity
from gaitid.training.torch_data import TrainBatches, sample_window


@pytest.fixture(scope="module")
def walk() -> NDArray[np.uint8]:
    """A synthetic walker's network crops ``(16, 64, 44)``, pretreated as the service does."""
    config = SynthConfig(subjects=1, min_frames=16, max_frames=16, noise=False)
    frames = render_walk(subject_identity(5, 0), "nm-01", 90, np.random.default_rng(5), config)
    return to_network_input(normalize_sequence(frames).frames)


def _iou(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> float:
    a, b = a > 127, b > 127
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_degraded_walk_keeps_the_person_but_not_the_mask(walk: NDArray[np.uint8]) -> None:
    config = AugmentConfig(probability=1.0)
    ious = []
    for seed in range(6):
        out = degrade_walk(walk, config, np.random.default_rng(seed))
        assert out.shape == walk.shape and out.dtype == np.uint8
        assert all((frame > 127).sum() > 100 for frame in out)  # every frame holds a body
        ious.append(np.mean([_iou(a, b) for a, b in zip(out, walk, strict=True)]))
    # changed as a segmenter would change it, yet still the same silhouette
    assert min(ious) > 0.35 and max(ious) < 0.97


def test_degradation_is_a_pure_function_of_the_generator(walk: NDArray[np.uint8]) -> None:
    config = AugmentConfig(probability=1.0)
    first = degrade_walk(walk, config, np.random.default_rng(3))
    again = degrade_walk(walk, config, np.random.default_rng(3))
    other = degrade_walk(walk, config, np.random.default_rng(4))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_a_frame_eroded_away_keeps_its_clean_original(walk: NDArray[np.uint8]) -> None:
    thin = np.zeros_like(walk[:2])
    thin[:, 10:50, 21:23] = 255  # a 2-pixel stick at 16 px of height is gone after erosion
    harsh = AugmentConfig(
        probability=1.0, min_height=16, max_height=16, morph_px=8, blur_sigma=0, edge_noise=0
    )
    for seed in range(20):  # some draws erode (morph < 0): those frames must come back clean
        out = degrade_walk(thin, harsh, np.random.default_rng(seed))
        for got, clean in zip(out, thin, strict=True):
            assert (got > 0).any(), "a frame lost its person instead of keeping the original"
            if np.array_equal(got, clean):
                return
    pytest.fail("no draw eroded the stick away")


def test_the_route_kind_resamples_the_mask_and_nothing_else(walk: NDArray[np.uint8]) -> None:
    """``kind: route``: the clip route's resampling only (a camera's size, the working
    height), so the silhouette stays where it was, closer to itself than any style draw, yet
    is not returned untouched; reproducible from the generator."""
    route = AugmentConfig(probability=1.0, kind="route")
    style = AugmentConfig(probability=1.0)
    route_ious, style_ious = [], []
    for seed in range(6):
        out = degrade_walk(walk, route, np.random.default_rng(seed))
        assert out.shape == walk.shape and out.dtype == np.uint8
        assert not np.array_equal(out, walk)
        route_ious.append(np.mean([_iou(a, b) for a, b in zip(out, walk, strict=True)]))
        styled = degrade_walk(walk, style, np.random.default_rng(seed))
        style_ious.append(np.mean([_iou(a, b) for a, b in zip(styled, walk, strict=True)]))
    assert min(route_ious) > 0.85
    assert np.mean(route_ious) > np.mean(style_ious)
    first = degrade_walk(walk, route, np.random.default_rng(3))
    assert np.array_equal(first, degrade_walk(walk, route, np.random.default_rng(3)))


def test_the_route_kind_keeps_a_frame_without_a_person(walk: NDArray[np.uint8]) -> None:
    frames = walk[:3].copy()
    frames[1] = 0  # nothing the composite would draw: kept as it came
    out = degrade_walk(
        frames, AugmentConfig(probability=1.0, kind="route"), np.random.default_rng(0)
    )
    assert not out[1].any() and out[0].any() and out[2].any()


def test_config_refuses_inverted_heights() -> None:
    with pytest.raises(ValidationError, match="min_height"):
        AugmentConfig(min_height=120, max_height=60)
    assert not AugmentConfig().enabled and AugmentConfig(probability=0.2).enabled


@pytest.mark.parametrize("length", [7, 20, 90])
def test_window_with_skipped_frames_is_ordered_and_full(length: int) -> None:
    skipped = 0
    for seed in range(30):
        window = sample_window(length, 12, np.random.default_rng(seed), skip=4)
        assert window.shape == (12,) and ((window >= 0) & (window < length)).all()
        steps = np.diff(window) % length  # forward through the end-to-end repetition
        assert ((steps >= 1) & (steps <= 5)).all()  # never backwards, at most 4 left out
        assert steps.sum() <= 12 + 4 - 1
        skipped += int(steps.sum() - 11)
    assert skipped > 0


def test_window_without_skip_is_unchanged() -> None:
    a = sample_window(50, 20, np.random.default_rng(1))
    b = sample_window(50, 20, np.random.default_rng(1), skip=0)
    assert np.array_equal(a, b) and np.array_equal(np.diff(a), np.ones(19))
    with pytest.raises(ValueError, match="skip"):
        sample_window(50, 20, np.random.default_rng(1), skip=-1)


def test_batches_without_augmentation_are_those_of_before(walk: NDArray[np.uint8]) -> None:
    walks, labels = [walk, walk[::-1].copy(), walk[2:].copy()], [0, 1, 1]
    spec = BatchSpec(iteration=7, indices=(0, 1, 2, 1))
    plain = TrainBatches(walks, labels, BatchPipeline(frames=10), seed=2)[spec][0]
    off_config = BatchPipeline(frames=10, augment=AugmentConfig())
    off = TrainBatches(walks, labels, off_config, seed=2)[spec][0]
    assert torch.equal(plain, off)
    rng = np.random.default_rng([2, 7, 0])  # the documented seed of iteration 7, rank 0
    for row, index in enumerate(spec.indices):
        expected = walks[index][sample_window(walks[index].shape[0], 10, rng)]
        assert np.array_equal(plain[row].numpy(), expected)


def test_augmented_batches_are_reproducible_and_differ(walk: NDArray[np.uint8]) -> None:
    walks, labels = [walk, walk[::-1].copy()], [0, 1]
    spec = BatchSpec(iteration=3, indices=(0, 1, 0, 1))
    pipeline = BatchPipeline(frames=10, augment=AugmentConfig(probability=1.0, drop_frames=1.0))
    make = lambda: TrainBatches(walks, labels, pipeline, seed=2)  # noqa: E731
    first, labels_out = make()[spec]
    assert torch.equal(first, make()[spec][0])
    assert labels_out.tolist() == [0, 1, 0, 1]
    plain = TrainBatches(walks, labels, BatchPipeline(frames=10), seed=2)[spec][0]
    assert first.shape == plain.shape and not torch.equal(first, plain)


def test_autocast_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(setup, "cpu_has_bf16_units", lambda: False)
    assert setup.use_autocast("auto", cuda) and not setup.use_autocast("auto", cpu)
    monkeypatch.setattr(setup, "cpu_has_bf16_units", lambda: True)
    assert setup.use_autocast("auto", cpu)
    assert not setup.use_autocast(False, cuda) and setup.use_autocast(True, cpu)


def test_bf16_flags_are_read_from_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from gaitid import cpu
    from tests.utils.cpu import pretend_cpu

    pretend_cpu(monkeypatch, tmp_path, "fpu avx2 avx512f")
    assert not setup.cpu_has_bf16_units()
    pretend_cpu(monkeypatch, tmp_path, "fpu avx512f avx512_bf16")
    assert setup.cpu_has_bf16_units()
    pretend_cpu(monkeypatch, tmp_path, "fpu amx_tile amx_bf16")
    assert setup.cpu_has_bf16_units()
    monkeypatch.setattr(cpu, "_CPUINFO", tmp_path / "absent")  # not Linux: no flags
    assert not setup.cpu_has_bf16_units()
