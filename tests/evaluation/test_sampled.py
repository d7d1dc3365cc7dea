"""The NCF paper's sampled protocol: HR@K / NDCG@K of a held-out item among sampled negatives."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.sampling import NegativeSampler
from recsys.evaluation.protocols import evaluate_sampled
from recsys.models import MF, Popularity
from tests.evaluation.helpers import TableNet

N_ITEMS = 20


def known_sampler(known: dict[int, set[int]]) -> NegativeSampler:
    users = torch.tensor([u for u, items in known.items() for _ in items], dtype=torch.long)
    items = torch.tensor([i for s in known.values() for i in sorted(s)], dtype=torch.long)
    return NegativeSampler(users, items, N_ITEMS)


@pytest.fixture
def controlled():
    """Each user has a held-out item 3 and a few never-seen items whose scores are all above,
    all below, or tied with it, so the held-out item's rank is known whatever is drawn."""
    free = {0: {5, 6}, 1: {7, 8}, 2: {1}}
    known = {u: set(range(N_ITEMS)) - f for u, f in free.items()}
    table = torch.full((3, N_ITEMS), -5.0)
    table[:, 3] = 0.5
    table[0, [5, 6]] = 0.9  # above: rank = n_negatives
    table[1, [7, 8]] = 0.1  # below: rank 0
    table[2, 1] = 0.5  # tied: counts against, rank = n_negatives
    users, items = torch.tensor([0, 1, 2]), torch.tensor([3, 3, 3])
    return TableNet(table), users, items, known_sampler(known)


@pytest.mark.parametrize("batch_size", [1, 2, 4096])
def test_known_ranks_give_exact_hr_and_ndcg(controlled, batch_size):
    net, users, items, known = controlled
    out = evaluate_sampled(
        net, users, items, known, ks=(1, 10), n_negatives=5, batch_size=batch_size
    )
    assert out["sampled/n_pairs"] == 3
    assert out["sampled/hr@10"] == pytest.approx(1.0)
    assert out["sampled/ndcg@10"] == pytest.approx((2 / math.log2(7) + 1) / 3)
    assert out["sampled/hr@1"] == pytest.approx(1 / 3)
    assert out["sampled/ndcg@1"] == pytest.approx(1 / 3)

    out = evaluate_sampled(net, users, items, known, ks=(10,), n_negatives=99, seed=7)
    assert out["sampled/hr@10"] == pytest.approx(1 / 3)
    assert out["sampled/ndcg@10"] == pytest.approx(1 / 3)
    assert set(out) == {"sampled/hr@10", "sampled/ndcg@10", "sampled/n_pairs"}


@pytest.mark.parametrize("n_negatives", [1, 9, 99])
def test_a_constant_scorer_gets_no_credit(controlled, n_negatives):
    _, users, items, known = controlled
    for net in (Popularity(3, N_ITEMS), TableNet(torch.ones(3, N_ITEMS))):
        out = evaluate_sampled(net, users, items, known, ks=(1, 10), n_negatives=n_negatives)
        for k in (1, 10):  # ranked last of n_negatives + 1: a hit only when K exceeds that
            hit = float(n_negatives < k)
            assert out[f"sampled/hr@{k}"] == hit
            assert out[f"sampled/ndcg@{k}"] == pytest.approx(hit / math.log2(n_negatives + 2))
        if n_negatives == 99:  # the paper's setting
            assert out["sampled/hr@10"] == out["sampled/ndcg@10"] == 0.0


def test_no_pairs_gives_zeros():
    known = known_sampler({0: {1}})
    empty = torch.empty(0, dtype=torch.long)
    out = evaluate_sampled(MF(1, N_ITEMS), empty, empty, known)
    assert out == {"sampled/hr@10": 0.0, "sampled/ndcg@10": 0.0, "sampled/n_pairs": 0}


@st.composite
def sampled_problems(draw):
    n_users = draw(st.integers(1, 5))
    known, pairs = {}, []
    for user in range(n_users):
        items = draw(st.permutations(range(N_ITEMS)))
        n_known = draw(st.integers(1, N_ITEMS - 1))
        known[user] = set(items[:n_known])
        held_out = draw(st.lists(st.sampled_from(items[:n_known]), max_size=3, unique=True))
        pairs += [(user, i) for i in held_out]
    table = torch.tensor(
        draw(st.lists(st.integers(0, 6), min_size=n_users * N_ITEMS, max_size=n_users * N_ITEMS)),
        dtype=torch.float32,
    ).view(n_users, N_ITEMS)  # few distinct values: ties are common
    return known, pairs, table


@settings(max_examples=60, deadline=None)
@given(
    problem=sampled_problems(),
    ks=st.lists(st.integers(1, 12), min_size=1, max_size=3, unique=True),
    n_negatives=st.integers(1, 15),
    batch_size=st.integers(1, 6),
    seed=st.integers(0, 1000),
)
def test_matches_brute_force_with_the_same_seeded_negatives(
    problem, ks, n_negatives, batch_size, seed
):
    known, pairs, table = problem
    sampler = known_sampler(known)
    users = torch.tensor([u for u, _ in pairs], dtype=torch.long)
    items = torch.tensor([i for _, i in pairs], dtype=torch.long)
    out = evaluate_sampled(
        TableNet(table), users, items, sampler, ks, n_negatives, seed, batch_size
    )

    # The same draws, one batch at a time from one seeded generator, ranked in plain Python.
    g = torch.Generator().manual_seed(seed)
    ranks = []
    for lo in range(0, len(pairs), batch_size):
        batch = pairs[lo : lo + batch_size]
        drawn = sampler.sample(
            torch.tensor([u for u, _ in batch]).repeat_interleave(n_negatives), g
        ).tolist()
        for n, (user, item) in enumerate(batch):
            negatives = drawn[n * n_negatives : (n + 1) * n_negatives]
            assert not set(negatives) & known[user]
            pos = float(table[user, item])
            ranks.append(sum(float(table[user, j]) >= pos for j in negatives))
    assert out["sampled/n_pairs"] == len(pairs)
    for k in ks:
        hr = sum(r < k for r in ranks) / max(1, len(ranks))
        ndcg = sum(1 / math.log2(r + 2) for r in ranks if r < k) / max(1, len(ranks))
        assert out[f"sampled/hr@{k}"] == pytest.approx(hr, abs=1e-9)
        assert out[f"sampled/ndcg@{k}"] == pytest.approx(ndcg, rel=1e-6, abs=1e-9)


def test_the_same_seed_gives_the_same_result():
    torch.manual_seed(0)
    net = MF(4, N_ITEMS, 8, init_std=1.0).eval()
    known = known_sampler({u: set(range(u, u + 6)) for u in range(4)})
    users, items = torch.tensor([0, 1, 2, 3] * 5), torch.tensor([2, 3, 4, 5] * 5)
    first = evaluate_sampled(net, users, items, known, ks=(5,), n_negatives=9, seed=3)
    assert first == evaluate_sampled(net, users, items, known, ks=(5,), n_negatives=9, seed=3)
