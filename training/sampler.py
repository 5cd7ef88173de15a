"""P x K identity sampler for triplet training (OpenGait's ``TripletSampler`` convention).

Each batch takes P distinct identities and K walks of each (drawn with replacement only when an
identity has fewer than K walks, as OpenGait does). Batch ``i`` is a pure function of
``(seed, i)``: the sampler reseeds its own ``torch.Generator`` per batch, so resuming at any
iteration reproduces the batches of an uninterrupted run exactly, however far a prefetching
``DataLoader`` had run ahead, and every DDP rank draws the same full batch without talking to the
others. Rank ``r`` of ``w`` then keeps the strided slice ``batch[r::w]`` (disjoint across ranks;
OpenGait slices the same way), so the union over ranks is exactly the single-process batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gaitid.errors import GaitidError


class SamplerError(GaitidError, ValueError):
    """A P x K sampler that cannot be built from the given labels and sizes."""


@dataclass(frozen=True)
class BatchSpec:
    """One training batch: its iteration number and this rank's dataset indices."""

    iteration: int
    indices: tuple[int, ...]


def _batch_seed(seed: int, iteration: int) -> int:
    # splitmix64-style mixing so neighbouring (seed, iteration) pairs give unrelated streams
    x = (seed * 0x9E3779B97F4A7C15 + iteration + 1) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (x ^ (x >> 31)) & 0x7FFFFFFFFFFFFFFF


class PKSampler:
    """Endless iterator of :class:`BatchSpec` with P identities x K walks each.

    ``labels[i]`` is the identity of dataset item ``i``. ``rank``/``world_size`` default to a
    single process; under DDP pass the process group's values (P*K must split evenly).
    """

    def __init__(
        self,
        labels: Sequence[int],
        p: int,
        k: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_iteration: int = 0,
    ) -> None:
        if p < 2:
            raise SamplerError(
                f"P must be >= 2 identities per batch (triplets need negatives), got {p}"
            )
        if k < 1:
            raise SamplerError(f"K must be >= 1 walk per identity, got {k}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise SamplerError(f"rank {rank} is not valid for world_size {world_size}")
        if (p * k) % world_size:
            raise SamplerError(
                f"batch P*K = {p}*{k} = {p * k} does not split evenly over world_size {world_size}"
            )
        by_label: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_label.setdefault(int(label), []).append(index)
        if len(by_label) < p:
            raise SamplerError(
                f"P = {p} identities per batch but the dataset has only {len(by_label)} identities"
            )
        self.p, self.k, self.seed = p, k, seed
        self.rank, self.world_size = rank, world_size
        self.iteration = start_iteration
        self._identities = sorted(by_label)
        self._members = [torch.tensor(by_label[i], dtype=torch.int64) for i in self._identities]
        self._generator = torch.Generator()

    @property
    def batch_size(self) -> int:
        """Walks per batch on this rank."""
        return self.p * self.k // self.world_size

    def full_batch(self, iteration: int) -> list[int]:
        """All P*K indices of batch ``iteration`` (the same on every rank), grouped by identity."""
        g = self._generator
        g.manual_seed(_batch_seed(self.seed, iteration))
        chosen = torch.randperm(len(self._identities), generator=g)[: self.p]
        out: list[int] = []
        for ident in chosen.tolist():
            members = self._members[ident]
            if len(members) >= self.k:
                pick = torch.randperm(len(members), generator=g)[: self.k]
            else:  # too few walks: draw with replacement (OpenGait's sync_random_sample_list)
                pick = torch.randint(len(members), (self.k,), generator=g)
            out.extend(members[pick].tolist())
        return out

    def batch(self, iteration: int) -> BatchSpec:
        """This rank's slice of batch ``iteration``."""
        full = self.full_batch(iteration)
        return BatchSpec(iteration, tuple(full[self.rank :: self.world_size]))

    def __iter__(self) -> Iterator[BatchSpec]:
        while True:
            spec = self.batch(self.iteration)
            self.iteration += 1
            yield spec

    def state_dict(self) -> dict[str, Any]:
        """Position and identity of the stream (the next iteration to draw)."""
        return {"seed": self.seed, "iteration": self.iteration, "p": self.p, "k": self.k}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream of ``state``; refuses a state from a different P, K or seed."""
        for key in ("seed", "p", "k"):
            if state[key] != getattr(self, key):
                raise SamplerError(
                    f"sampler state has {key}={state[key]} but this sampler has "
                    f"{key}={getattr(self, key)}; resume with the config that wrote the checkpoint"
                )
        self.iteration = int(state["iteration"])
