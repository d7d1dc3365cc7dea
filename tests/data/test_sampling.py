"""Negative sampling and BPR batches against their definitions, on random interactions."""

from __future__ import annotations

from collections import Counter
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data import sampling
from recsys.data.sampling import (
    BPRGroups,
    NegativeSampler,
    popularity_weights,
    recency_weights,
)


@st.composite
def interaction_sets(draw, max_items: int = 60, max_users: int = 6):
    """(users, items, n_users, n_items, seen): unique pairs in random order; no user saw every
    item, and some users ("dense") saw all but one or two, which forces the exact fallback."""
    n_items = draw(st.integers(1, max_items))
    n_users = draw(st.integers(1, max_users))
    every = set(range(n_items))
    seen: dict[int, set[int]] = {}
    for user in range(n_users):
        dense = n_items >= 2 and draw(st.booleans())
        if dense:
            free = draw(st.sets(st.sampled_from(sorted(every)), min_size=1, max_size=2))
            seen[user] = every - free
        else:
            seen[user] = draw(st.sets(st.integers(0, n_items - 1), max_size=n_items - 1))
    pairs = draw(st.permutations([(u, i) for u, items in seen.items() for i in sorted(items)]))
    users = torch.tensor([u for u, _ in pairs], dtype=torch.long)
    items = torch.tensor([i for _, i in pairs], dtype=torch.long)
    return users, items, n_users, n_items, seen


@settings(max_examples=60, deadline=None)
@given(
    data=interaction_sets(),
    rounds=st.sampled_from([0, 1, sampling.MAX_REJECTION_ROUNDS]),
    seed=st.integers(0, 2**32),
    int32=st.booleans(),
)
def test_negatives_are_never_train_positives(data, rounds, seed, int32):
    users, items, n_users, n_items, seen = data
    dtype = torch.int32 if int32 else torch.long
    sampler = NegativeSampler(users.to(dtype), items.to(dtype), n_items)
    query = torch.arange(n_users).repeat_interleave(40)[torch.randperm(n_users * 40)]
    with mock.patch.object(sampling, "MAX_REJECTION_ROUNDS", rounds):
        neg = sampler.sample(query.to(dtype), torch.Generator().manual_seed(seed))
    assert neg.shape == query.shape
    assert all(
        0 <= i < n_items and i not in seen[u]
        for u, i in zip(query.tolist(), neg.tolist(), strict=True)
    )
    every = torch.arange(n_items)
    for user in range(n_users):
        want = [i in seen[user] for i in range(n_items)]
        assert sampler.is_positive(torch.full((n_items,), user), every).tolist() == want


def chi_square(samples: list[int], support: list[int]) -> tuple[float, int]:
    counts = Counter(samples)
    assert set(counts) <= set(support)
    expected = len(samples) / len(support)
    return sum((counts[i] - expected) ** 2 / expected for i in support), len(support) - 1


@pytest.mark.parametrize("rounds", [0, 2, sampling.MAX_REJECTION_ROUNDS])
def test_negatives_are_uniform_over_the_unseen_items(rounds):
    n_items = 30
    seen = {0: set(range(10)) | {15}, 1: set(range(n_items)) - {4, 27}, 2: {3}, 3: set()}
    users = torch.tensor([u for u, s in seen.items() for _ in s])
    items = torch.tensor([i for s in seen.values() for i in sorted(s)])
    sampler = NegativeSampler(users, items, n_items)
    query = torch.arange(len(seen)).repeat(6000)
    with mock.patch.object(sampling, "MAX_REJECTION_ROUNDS", rounds):
        neg = sampler.sample(query, torch.Generator().manual_seed(1234))
    for user, items_seen in seen.items():
        support = [i for i in range(n_items) if i not in items_seen]
        stat, df = chi_square(neg[query == user].tolist(), support)
        # Loose: about 10 standard deviations of a chi-square with df degrees of freedom.
        assert stat < df + 10 * (2 * df) ** 0.5 + 10, (user, stat, df)


def test_sampling_is_deterministic_for_a_seeded_generator():
    users = torch.tensor([0, 0, 1, 2, 2, 2])
    items = torch.tensor([1, 5, 0, 2, 3, 4])
    sampler = NegativeSampler(users, items, 7)
    query = torch.tensor([0, 1, 2] * 50)
    first = sampler.sample(query, torch.Generator().manual_seed(9))
    torch.manual_seed(0)  # the global RNG plays no part
    again = sampler.sample(query, torch.Generator().manual_seed(9))
    other = sampler.sample(query, torch.Generator().manual_seed(10))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_a_user_who_saw_every_item_is_refused():
    users = torch.tensor([0, 0, 0, 1, 1, 1])
    items = torch.tensor([2, 0, 1, 1, 0, 2])
    with pytest.raises(ValueError, match="every one of the 3 items"):
        NegativeSampler(users, items, 3)
    with pytest.raises(ValueError, match="every one of the 1 items"):
        NegativeSampler(torch.tensor([0]), torch.tensor([0]), 1)


def test_repeated_rows_do_not_count_as_more_items():
    sampler = NegativeSampler(torch.tensor([0, 0, 0]), torch.tensor([1, 1, 0]), 3)
    neg = sampler.sample(torch.zeros(20, dtype=torch.long), torch.Generator().manual_seed(0))
    assert neg.tolist() == [2] * 20


def test_empty_train_samples_any_item():
    sampler = NegativeSampler(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), 4)
    neg = sampler.sample(torch.zeros(200, dtype=torch.long), torch.Generator().manual_seed(0))
    assert set(neg.tolist()) == {0, 1, 2, 3}


# --- BPR triplets ----------------------------------------------------------------------------


def epoch_batches(ds: BPRGroups) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [tuple(t.clone() for t in batch) for batch in ds]


def check_batches(batches, rows_per_batch: int, k: int, seen: dict[int, set[int]]) -> None:
    for n, (u, items) in enumerate(batches):
        for t in (u, items):
            assert isinstance(t, torch.Tensor) and t.dtype == torch.long
        assert u.dim() == 1 and items.shape == (u.numel(), 1 + k)
        if n < len(batches) - 1:
            assert u.numel() == rows_per_batch
        else:
            assert 1 <= u.numel() <= rows_per_batch
        for user, row in zip(u.tolist(), items.tolist(), strict=True):
            assert row[0] in seen[user] and not set(row[1:]) & seen[user]


@settings(max_examples=60, deadline=None)
@given(
    data=interaction_sets(max_items=12),
    batch_size=st.integers(1, 9),
    num_negatives=st.integers(1, 3),
    world_size=st.integers(1, 3),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 5),
    chunk=st.sampled_from([1, 4, 7, sampling.CHUNK_TRIPLETS]),
)
def test_epoch_shards_cover_every_interaction_once_with_num_negatives_negatives(
    data, batch_size, num_negatives, world_size, seed, epoch, chunk
):
    users, items, _, n_items, seen = data
    sampler = NegativeSampler(users, items, n_items)
    index = {(u, i): n for n, (u, i) in enumerate(zip(users.tolist(), items.tolist(), strict=True))}
    shards = []
    with mock.patch.object(sampling, "CHUNK_TRIPLETS", chunk):
        for rank in range(world_size):
            ds = BPRGroups(
                users.to(torch.int32),
                items.to(torch.int32),
                sampler,
                batch_size,
                num_negatives,
                seed=seed,
                rank=rank,
                world_size=world_size,
                epoch=lambda: epoch,
            )
            batches = epoch_batches(ds)
            assert len(ds) == len(batches)
            rows_per_batch = max(1, batch_size // num_negatives)  # batch_size counts triplets
            check_batches(batches, rows_per_batch, num_negatives, seen)
            rows = [
                index[pair]
                for u, items in batches
                for pair in zip(u.tolist(), items[:, 0].tolist(), strict=True)
            ]
            counts = Counter(rows)
            assert set(counts.values()) <= {1}
            assert len(rows) * num_negatives == ds.shard_size()
            assert ds.shard_size() == len(users) // world_size * num_negatives
            shards.append(set(counts))
    covered = set().union(*shards)
    assert sum(len(s) for s in shards) == len(covered)  # disjoint
    assert len({len(s) for s in shards}) == 1  # equal-sized
    assert len(users) - world_size < len(covered) <= len(users)
    if world_size == 1:
        assert covered == set(range(len(users)))


def dataset(**kwargs) -> BPRGroups:
    g = torch.Generator().manual_seed(0)
    pairs = torch.randperm(40 * 30, generator=g)[:300]
    users, items = pairs // 30, pairs % 30
    args = {"batch_size": 16, "num_negatives": 2, "seed": 3} | kwargs
    return BPRGroups(users, items, NegativeSampler(users, items, 30), **args)


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x, y) for ba, bb in zip(a, b, strict=True) for x, y in zip(ba, bb, strict=True)
    )


def test_same_seed_and_epoch_replays_identical_batches():
    box = [4]
    ds = dataset(epoch=lambda: box[0])
    first = epoch_batches(ds)
    assert same(first, epoch_batches(ds))
    assert same(first, epoch_batches(dataset(epoch=lambda: 4)))
    box[0] = 5  # the epoch is read when iteration starts
    later = epoch_batches(ds)
    assert not same(first, later)
    order = [torch.cat([b[0] * 30 + b[1][:, 0] for b in run]) for run in (first, later)]
    assert not torch.equal(order[0], order[1])  # a new order, not only new negatives
    assert sorted(order[0].tolist()) == sorted(order[1].tolist())
    assert not same(first, epoch_batches(dataset(seed=4, epoch=lambda: 4)))


def test_len_is_known_before_iterating_on_every_rank():
    r0, r1 = dataset(rank=0, world_size=2), dataset(rank=1, world_size=2)
    # 150 rows per rank, 16 triplets per batch = 8 rows of 2 negatives
    assert len(r0) == len(r1) == -(-(300 // 2) // 8) == len(epoch_batches(r0))


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"num_negatives": 0}])
def test_bad_sizes_are_refused(kwargs):
    with pytest.raises(ValueError, match="at least 1"):
        dataset(**kwargs)


# --- recency weighting -----------------------------------------------------------------------


def test_recency_weights_halve_every_half_life():
    day = 86_400_000
    t = torch.tensor([100 * day, 90 * day, 80 * day, 100 * day - day // 2])
    w = recency_weights(t, half_life_days=10)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.5, 0.25, 2**-0.05]))
    with pytest.raises(ValueError, match="> 0 days"):
        recency_weights(t, 0)


def test_weighted_epochs_draw_positives_in_proportion_to_their_weight():
    """Half the interactions weigh 3x the rest: over epochs they make 3/4 of the positives,
    each epoch still has one positive per interaction, and a seed replays its draw."""
    n = 400
    users, items = torch.arange(n) // 20, torch.arange(n) % 20 + (torch.arange(n) // 20) % 2
    weights = torch.where(torch.arange(n) < n // 2, 3.0, 1.0)
    draws = Counter()
    for epoch in range(20):
        ds = BPRGroups(
            users, items, NegativeSampler(users, items, 22), batch_size=64, num_negatives=1,
            seed=1, epoch=lambda e=epoch: e, weights=weights,
        )  # fmt: skip
        batches = epoch_batches(ds)
        assert sum(u.numel() for u, _ in batches) == n
        if epoch == 0:
            assert same(batches, epoch_batches(ds))
        for u, rows in batches:
            draws.update((u * 100 + rows[:, 0]).tolist())
    heavy = sum(c for key, c in draws.items() if key // 100 < 10)  # users 0-9: rows 0-199
    assert heavy / (20 * n) == pytest.approx(0.75, abs=0.02)
    with pytest.raises(ValueError, match="positive, one per train interaction"):
        BPRGroups(users, items, NegativeSampler(users, items, 22), 8, weights=torch.zeros(n))


def test_popularity_negatives_follow_the_weights_among_unseen_items():
    """Draws are proportional to count ** exponent over the items the user has not seen
    (the rejected mass spreads over the rest in proportion), and never a positive."""
    n_items = 6
    # Item i occurs (i + 1) ** 2 times in train, each time by a new user; user 0 saw item 5.
    items = torch.tensor([5] + [i for i in range(n_items) for _ in range((i + 1) ** 2)])
    users = torch.arange(items.numel())
    weights = popularity_weights(items, n_items, 0.5)
    counts = torch.bincount(items, minlength=n_items).double()
    torch.testing.assert_close(weights, counts.sqrt())
    sampler = NegativeSampler(users, items, n_items, weights)
    draws = sampler.sample(torch.zeros(200_000, dtype=torch.long), torch.Generator().manual_seed(0))
    assert not bool((draws == 5).any())
    freq = torch.bincount(draws, minlength=n_items).double() / draws.numel()
    want = weights.clone()
    want[5] = 0
    torch.testing.assert_close(freq, want / want.sum(), atol=4e-3, rtol=0)
    q = weights / weights.sum()
    torch.testing.assert_close(sampler.log_q_ratio, torch.log(q * n_items).float())


def test_popularity_sampler_exact_fallback_respects_weights():
    """A user who saw all but two items gets them in proportion to their weights."""
    n_items = 5
    users = torch.zeros(3, dtype=torch.long)
    items = torch.tensor([0, 1, 2])
    weights = torch.tensor([1.0, 1.0, 1.0, 1.0, 3.0])
    sampler = NegativeSampler(users, items, n_items, weights)
    g = torch.Generator().manual_seed(1)
    with mock.patch.object(sampling, "MAX_REJECTION_ROUNDS", 0):
        draws = sampler.sample(torch.zeros(4000, dtype=torch.long), g)
    assert set(draws.tolist()) == {3, 4}
    assert 0.70 < float((draws == 4).double().mean()) < 0.80


def test_popularity_weights_refuse_bad_input():
    with pytest.raises(ValueError, match="exponent"):
        popularity_weights(torch.tensor([0, 1]), 2, -1.0)
    with pytest.raises(ValueError, match="item weights"):
        NegativeSampler(torch.tensor([0]), torch.tensor([0]), 3, torch.ones(2))
