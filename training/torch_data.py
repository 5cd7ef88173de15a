"""Torch datasets over walks held in memory as uint8 ``(T, 64, 44)`` arrays.

Training batches are built whole by :class:`TrainBatches` from a
:class:`~training.sampler.BatchSpec` (``DataLoader(batch_size=None)``), so a batch is one numpy
gather of small uint8 arrays: cheap enough that a single process keeps a GPU fed (measured by
``bench/train_loader.py``), with worker processes as an option. Batches stay
uint8 until they reach the device (4x less to copy), where :func:`to_model_input` scales to
[0, 1] as the ONNX contract and ``gaitid.contract.batch_sequences`` do.

Frame windows (OpenGait "fixed ordered" sampling): each walk contributes an ordered window of
``frames`` consecutive frames at a random start. A walk shorter than ``frames`` is first repeated
end to end (``[0..L-1, 0..L-1, ...]``, ``ceil(frames / L)`` times) and the window is cut from the
repetition, exactly as OpenGait's ``CollateFn`` does, so every training walk has ``frames`` real
frames and no padding. The settings are the data section of the config itself
(:class:`~training.config.BatchPipeline`: ``frames``, ``augment``), handed over whole. With
``data.augment`` on, a share of the walks is degraded the ways a
segmenter errs (:mod:`training.augment`), some with frames left out of their window; with
``data.flip``, a share is mirrored left to right. The
start of every window (and every degradation) is drawn from a numpy generator seeded by
``(seed, iteration, rank)``: batches are reproducible on resume and independent of worker count.

Evaluation uses every frame of every walk: :func:`eval_batches` groups walks of similar length
and pads with zeros at the end plus ``lengths`` (the network masks the padding).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from numpy.typing import NDArray

from gaitid.training.augment import degrade_walk
from gaitid.training.config import BatchPipeline
from gaitid.training.sampler import BatchSpec


def sample_window(
    length: int, frames: int, rng: np.random.Generator, *, skip: int = 0
) -> NDArray[np.int64]:
    """Indices of an ordered ``frames``-long window into a walk of ``length`` frames.

    ``skip`` > 0 cuts a window of ``frames + skip`` and leaves out ``skip`` of its frames at
    random (never the first): the gaps a segmenter leaves where it dropped frames.
    """
    if length < 1:
        raise ValueError(f"a walk needs at least 1 frame, got length {length}")
    if frames < 1:
        raise ValueError(f"window length must be >= 1, got {frames}")
    if skip < 0:
        raise ValueError(f"skip must be >= 0, got {skip}")
    span = frames + skip
    repeats = -(-span // length)  # ceil: repeat short walks end to end (OpenGait)
    total = length * repeats
    start = int(rng.integers(0, total - span + 1))
    window = np.arange(start, start + span, dtype=np.int64) % length
    if skip:
        keep = np.sort(rng.choice(np.arange(1, span), size=frames - 1, replace=False))
        window = window[np.concatenate([[0], keep])]
    return window


class TrainBatches(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Map a :class:`BatchSpec` to ``(uint8 [N, frames, 64, 44], labels int64 [N])``.

    ``pipeline`` is how a walk becomes a row (the config's ``data`` section, or a bare
    :class:`BatchPipeline`); ``seed`` and ``rank`` seed each batch's draws.
    """

    def __init__(
        self,
        walks: Sequence[NDArray[np.uint8]],
        labels: Sequence[int],
        pipeline: BatchPipeline,
        *,
        seed: int,
        rank: int = 0,
    ) -> None:
        if len(walks) != len(labels):
            raise ValueError(f"{len(walks)} walks but {len(labels)} labels")
        self.walks = list(walks)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.pipeline, self.seed, self.rank = pipeline, seed, rank

    def __len__(self) -> int:  # batches are addressed by BatchSpec, not by position
        return len(self.walks)

    def __getitem__(self, spec: BatchSpec) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, spec.iteration, self.rank])
        frames, augment = self.pipeline.frames, self.pipeline.augment
        out = np.empty((len(spec.indices), frames, *self.walks[0].shape[1:]), np.uint8)
        flip = self.pipeline.flip
        for row, index in enumerate(spec.indices):
            walk = self.walks[index]
            if not augment.enabled:  # draws nothing more: batches as before augmentation existed
                out[row] = walk[sample_window(walk.shape[0], frames, rng)]
            else:
                degrade = rng.random() < augment.probability
                skip = 0
                if degrade and rng.random() < augment.drop_frames:
                    skip = int(rng.integers(0, int(frames * augment.max_dropped) + 1))
                window = walk[sample_window(walk.shape[0], frames, rng, skip=skip)]
                out[row] = degrade_walk(window, augment, rng) if degrade else window
            if flip and rng.random() < flip:  # no draw at 0: batches as before flipping existed
                out[row] = out[row][:, :, ::-1]
        return torch.from_numpy(out), torch.from_numpy(self.labels[list(spec.indices)])


def to_model_input(frames: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[N, T, H, W]`` -> (float32 in [0, 1] on ``device``, full ``lengths`` int64)."""
    x = frames.to(device, non_blocking=True).float().div_(255.0)
    lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64, device=device)
    return x, lengths


def eval_batches(
    walks: Sequence[NDArray[np.uint8]], batch_size: int, *, max_frames_per_batch: int = 4096
) -> Iterator[tuple[list[int], NDArray[np.float32], NDArray[np.int64]]]:
    """Yield ``(indices, silhouettes [n, T, 64, 44] float32, lengths [n])`` over all walks.

    Walks are sorted by length so a batch pads little; a batch is cut early when its padded
    size would pass ``max_frames_per_batch`` (keeps long walks from exhausting memory).
    """
    from gaitid.contract import batch_sequences

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(walks)), key=lambda i: walks[i].shape[0])
    chunk: list[int] = []
    for index in order:
        longest = walks[index].shape[0]  # sorted ascending: the newest walk is the longest
        if chunk and (
            len(chunk) >= batch_size or longest * (len(chunk) + 1) > max_frames_per_batch
        ):
            silhouettes, lengths = batch_sequences([walks[i] for i in chunk])
            yield chunk, silhouettes, lengths
            chunk = []
        chunk.append(index)
    if chunk:
        silhouettes, lengths = batch_sequences([walks[i] for i in chunk])
        yield chunk, silhouettes, lengths
