"""P x K sampler: batch composition, determinism, resume, DDP slicing, bad sizes."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from gaitid.training.sampler import PKSampler, SamplerError

# 5 identities; identity 4 has only 2 walks (fewer than K)
LABELS = [0] * 6 + [1] * 5 + [2] * 7 + [3] * 4 + [4] * 2


def _take(sampler: PKSampler, n: int) -> list[tuple[int, ...]]:
    return [spec.indices for spec in itertools.islice(iter(sampler), n)]


def test_batches_have_p_identities_with_k_walks_each() -> None:
    sampler = PKSampler(LABELS, p=3, k=4, seed=0)
    for indices in _take(sampler, 20):
        counts = Counter(LABELS[i] for i in indices)
        assert len(indices) == 12
        assert len(counts) == 3 and set(counts.values()) == {4}


def test_identity_with_fewer_than_k_walks_is_drawn_with_replacement() -> None:
    sampler = PKSampler(LABELS, p=5, k=4, seed=1)
    indices = _take(sampler, 1)[0]
    small = [i for i in indices if LABELS[i] == 4]
    assert len(small) == 4 and set(small) <= {22, 23}


def test_walks_are_distinct_when_enough() -> None:
    sampler = PKSampler(LABELS, p=2, k=4, seed=2)
    for indices in _take(sampler, 30):
        for ident in {LABELS[i] for i in indices} - {4}:
            mine = [i for i in indices if LABELS[i] == ident]
            assert len(set(mine)) == len(mine)


def test_same_seed_same_batches_and_different_seed_differs() -> None:
    a = _take(PKSampler(LABELS, 3, 2, seed=7), 10)
    b = _take(PKSampler(LABELS, 3, 2, seed=7), 10)
    c = _take(PKSampler(LABELS, 3, 2, seed=8), 10)
    assert a == b and a != c


def test_state_dict_resumes_the_same_stream() -> None:
    full = _take(PKSampler(LABELS, 3, 2, seed=3), 12)
    first = PKSampler(LABELS, 3, 2, seed=3)
    head = _take(first, 5)
    resumed = PKSampler(LABELS, 3, 2, seed=3)
    resumed.load_state_dict(first.state_dict())
    assert head + _take(resumed, 7) == full


def test_state_from_another_configuration_is_refused() -> None:
    state = PKSampler(LABELS, 3, 2, seed=3).state_dict()
    with pytest.raises(SamplerError, match="k=2"):
        PKSampler(LABELS, 3, 4, seed=3).load_state_dict(state)


def test_ranks_take_disjoint_slices_whose_union_is_the_batch() -> None:
    single = PKSampler(LABELS, 4, 4, seed=5)
    ranks = [PKSampler(LABELS, 4, 4, seed=5, rank=r, world_size=2) for r in range(2)]
    for it in range(5):
        full = single.batch(it).indices
        parts = [s.batch(it).indices for s in ranks]
        assert all(len(p) == 8 for p in parts)
        assert sorted(parts[0] + parts[1]) == sorted(full)
        assert list(parts[0]) == list(full[0::2]) and list(parts[1]) == list(full[1::2])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"p": 6, "k": 2}, "P = 6 identities per batch but the dataset has only 5"),
        ({"p": 1, "k": 2}, "P must be >= 2"),
        ({"p": 2, "k": 0}, "K must be >= 1"),
        ({"p": 3, "k": 3, "world_size": 2}, r"3\*3 = 9 does not split evenly over world_size 2"),
        ({"p": 2, "k": 2, "rank": 2, "world_size": 2}, "rank 2 is not valid"),
    ],
)
def test_impossible_sizes_are_rejected_naming_the_values(kwargs: dict, message: str) -> None:
    with pytest.raises(SamplerError, match=message):
        PKSampler(LABELS, seed=0, **kwargs)
