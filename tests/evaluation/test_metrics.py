"""Full-ranking evaluation (docs/REFERENCE.md, Evaluation) against a brute-force implementation
in plain Python."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.data.evalsets import EvalBatches, EvalSet
from recsys.evaluation.metrics import RankingMetrics, recall_ndcg
from recsys.evaluation.protocols import evaluate_full, rank_batch
from recsys.evaluation.ranking import masked_topk
from recsys.models import MF, NeuMF
from recsys.sparse import build_csr, csr_rows
from tests.evaluation.helpers import TableNet


def brute_force(scores, seen, relevant, ks):
    """docs/REFERENCE.md, Evaluation, literally: rank unseen items by score; Recall =
    hits/|rel|; NDCG binary gains, ideal DCG over min(K, |rel|); mean over users with at least
    one relevant item."""
    per_user, top = {}, {}
    for user, rel in relevant.items():
        if not rel:
            continue
        candidates = [i for i in range(len(scores[user])) if i not in seen.get(user, set())]
        ranked = sorted(candidates, key=lambda i: -scores[user][i])
        top[user] = ranked[: max(ks)]
        for k in ks:
            hits = [1 if i in rel else 0 for i in ranked[:k]]
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
            per_user[user, k] = (sum(hits) / len(rel), dcg / idcg)
    users = sorted(top)
    out = {"n_users": len(users)}
    for k in ks:
        out[f"recall@{k}"] = sum(per_user[u, k][0] for u in users) / max(1, len(users))
        out[f"ndcg@{k}"] = sum(per_user[u, k][1] for u in users) / max(1, len(users))
    return out, top


def as_tensors(sets: dict[int, set[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [(u, i) for u, items in sets.items() for i in items]
    rng = np.random.default_rng(len(pairs))
    pairs = [pairs[n] for n in rng.permutation(len(pairs))]  # the splits are not sorted
    return (
        torch.tensor([u for u, _ in pairs], dtype=torch.long),
        torch.tensor([i for _, i in pairs], dtype=torch.long),
    )


@st.composite
def eval_problems(draw):
    """Random seen/relevant sets (disjoint per user) and a ties-free score table."""
    n_users, n_items = draw(st.integers(1, 8)), draw(st.integers(1, 30))
    seen, relevant = {}, {}
    for user in range(n_users):
        items = draw(st.permutations(range(n_items)))
        n_seen = draw(st.integers(0, n_items))
        n_rel = draw(st.integers(0, n_items - n_seen))
        seen[user] = set(items[:n_seen])
        relevant[user] = set(items[n_seen : n_seen + n_rel])
    seed = draw(st.integers(0, 2**31))
    ranks = torch.randperm(n_users * n_items, generator=torch.Generator().manual_seed(seed))
    table = (ranks.float() / (n_users * n_items) - 0.5).view(n_users, n_items)
    return table, seen, relevant


KS = st.lists(st.integers(1, 25), min_size=1, max_size=3, unique=True)


def check_ranked(ranked, table, seen, top) -> None:
    for batch in ranked:
        valid = batch.valid
        for row, user in enumerate(batch.users.tolist()):
            items = batch.items[row][valid[row]].tolist()
            assert items == top[user]  # exact order: scores are ties-free
            assert not set(items) & seen[user]
            scores = batch.scores[row][valid[row]]
            assert torch.equal(scores, table[user, items])
            n_unseen = table.shape[1] - len(seen[user])
            assert int(valid[row].sum()) == min(batch.items.shape[1], n_unseen)
            assert bool(valid[row][: int(valid[row].sum())].all())  # the -inf slots come last


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
@settings(max_examples=120, deadline=None)
@given(problem=eval_problems(), ks=KS, batch_size=st.integers(1, 5))
def test_evaluate_full_matches_brute_force(problem, ks, batch_size):
    table, seen, relevant = problem
    n_users = table.shape[0]
    evalset = EvalSet.build([as_tensors(seen)], as_tensors(relevant), n_users)
    values, ranked = evaluate_full(TableNet(table), evalset, ks, batch_size)
    want, top = brute_force(table.tolist(), seen, relevant, ks)
    assert values["n_users"] == want["n_users"] == evalset.users.numel()
    assert evalset.users.tolist() == sorted(top)
    assert set(values) == set(want)
    for name, value in want.items():
        assert values[name] == pytest.approx(value, rel=1e-6, abs=1e-7), name
    check_ranked(ranked, table, seen, top)


def test_seen_items_may_come_from_several_splits():
    table = torch.arange(12, dtype=torch.float32).flip(0).view(1, 12)  # item 0 scores highest
    train = (torch.tensor([0, 0]), torch.tensor([0, 3]))
    val = (torch.tensor([0]), torch.tensor([1]))
    test = (torch.tensor([0, 0]), torch.tensor([2, 7]))
    evalset = EvalSet.build([train, val], test, 1)
    values, ranked = evaluate_full(TableNet(table), evalset, [1, 3])
    assert ranked[0].items[0].tolist() == [2, 4, 5]
    assert values["recall@1"] == pytest.approx(0.5)
    assert values["recall@3"] == pytest.approx(0.5)
    assert values["ndcg@3"] == pytest.approx(1 / (1 + 1 / math.log2(3)))


@pytest.mark.parametrize("make_net", [lambda: MF(9, 40, 6, init_std=1.0), lambda: NeuMF(9, 40)])
def test_evaluate_full_on_real_nets(make_net):
    torch.manual_seed(5)
    net = make_net().eval()
    g = np.random.default_rng(5)
    seen = {u: set(g.choice(40, int(g.integers(0, 38)), replace=False).tolist()) for u in range(9)}
    relevant = {u: set(g.choice(sorted(set(range(40)) - seen[u]), 2).tolist()) for u in range(8)}
    evalset = EvalSet.build([as_tensors(seen)], as_tensors(relevant), 9)
    with torch.no_grad():
        table = net.score_items(torch.arange(9))
    values, ranked = evaluate_full(net, evalset, [5, 10, 20], batch_size=4)
    want, top = brute_force(table.tolist(), seen, relevant, [5, 10, 20])
    assert values == pytest.approx(want, rel=1e-6)
    for batch in ranked:
        for row, user in enumerate(batch.users.tolist()):
            assert batch.items[row][batch.valid[row]].tolist() == top[user]


@settings(max_examples=80, deadline=None)
@given(problem=eval_problems(), k=st.integers(1, 25), data=st.data())
def test_chunked_masked_topk_equals_unchunked(problem, k, data):
    table, seen, _ = problem
    n_users, n_items = table.shape
    chunk = data.draw(st.integers(1, n_items + 3))
    users = torch.tensor(data.draw(st.lists(st.integers(0, n_users - 1), min_size=1)))
    indptr, indices = build_csr(*as_tensors(seen), n_users)
    rows, cols = csr_rows(indptr, indices, users)
    net = TableNet(table)
    want_scores, want_items = masked_topk(net, users, rows, cols, k, chunk=n_items)
    got_scores, got_items = masked_topk(net, users, rows, cols, k, chunk=chunk)
    assert got_scores.shape == want_scores.shape == (users.numel(), min(k, n_items))
    assert torch.equal(got_scores, want_scores)
    valid = want_scores > -torch.inf
    assert torch.equal(got_items[valid], want_items[valid])
    default_scores, _ = masked_topk(net, users, rows, cols, k)
    assert torch.equal(default_scores, want_scores)


# --- RankingMetrics ------------------------------------------------------------------------


@st.composite
def hit_matrices(draw):
    n, width = draw(st.integers(1, 12)), draw(st.integers(1, 25))
    hits = torch.tensor(draw(st.lists(st.booleans(), min_size=n * width, max_size=n * width)))
    hits = hits.view(n, width)
    extra = torch.tensor(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)))
    n_relevant = (hits.sum(1) + extra).clamp(min=1)
    return hits, n_relevant


def metric_brute(hits, n_relevant, ks):
    out = {"n_users": hits.shape[0]}
    for k in ks:
        recall, ndcg = [], []
        for row, n_rel in zip(hits.tolist(), n_relevant.tolist(), strict=True):
            row = row[:k]
            recall.append(sum(row) / n_rel)
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(row))
            ndcg.append(dcg / sum(1 / math.log2(r + 2) for r in range(min(k, n_rel))))
        out[f"recall@{k}"] = sum(recall) / len(recall)
        out[f"ndcg@{k}"] = sum(ndcg) / len(ndcg)
    return out


def computed(metric: RankingMetrics) -> dict[str, float]:
    return {name: float(v) for name, v in metric.compute().items()}


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
@settings(max_examples=80, deadline=None)
@given(problem=hit_matrices(), ks=KS, split=st.integers(0, 12))
def test_ranking_metrics_accumulates_like_one_update(problem, ks, split):
    hits, n_relevant = problem
    want = metric_brute(hits, n_relevant, ks)
    one = RankingMetrics(ks)
    one.update(hits, n_relevant)
    assert computed(one) == pytest.approx(want, rel=1e-6, abs=1e-7)

    halves = RankingMetrics(ks)
    halves.update(hits[:split], n_relevant[:split])
    halves.update(hits[split:], n_relevant[split:])
    assert computed(halves) == pytest.approx(computed(one), rel=1e-12, abs=1e-12)

    ranks = [RankingMetrics(ks) for _ in range(2)]
    for rank, metric in enumerate(ranks):  # the strided shards EvalBatches gives each rank
        metric.update(hits[rank::2], n_relevant[rank::2])
    merged = RankingMetrics(ks)
    for name, reduce in merged._reductions.items():
        assert reduce is torch.sum or getattr(reduce, "__name__", "") == "dim_zero_sum", name
        setattr(merged, name, sum(getattr(m, name) for m in ranks))
    assert computed(merged) == pytest.approx(computed(one), rel=1e-9, abs=1e-12)


def test_ranking_metrics_per_user_values_and_bad_cutoffs():
    hits = torch.tensor([[True, False, True], [False, False, False]])
    out = recall_ndcg(hits, torch.tensor([4, 1]), [1, 2, 5])
    assert out[1][0].tolist() == [0.25, 0.0]
    assert out[5][1][0].item() == pytest.approx(
        (1 + 0.5) / sum(1 / math.log2(r + 2) for r in range(4))
    )
    for ks in ([], [0, 10]):
        with pytest.raises(ValueError, match="positive"):
            RankingMetrics(ks)


def test_eval_batches_shard_users_without_overlap():
    relevant = as_tensors({u: {u % 3} for u in range(0, 23, 2)})
    evalset = EvalSet.build([], relevant, 23)
    shards = [
        [u for b in EvalBatches(evalset, 2, rank, 3) for u in b["users"].tolist()]
        for rank in range(3)
    ]
    assert (
        sorted(u for shard in shards for u in shard)
        == evalset.users.tolist()
        == list(range(0, 23, 2))
    )
    assert len(EvalBatches(evalset, 2, 0, 3)) == 2


def test_evalset_user_sample_is_fixed_and_sorted():
    relevant = as_tensors({u: {1} for u in range(50)})
    a = EvalSet.build([], relevant, 50, max_users=10, seed=1)
    b = EvalSet.build([], relevant, 50, max_users=10, seed=1)
    assert a.users.tolist() == b.users.tolist() == sorted(set(a.users.tolist()))
    assert a.users.numel() == 10


# --- CSR helpers ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    n_users=st.integers(1, 10),
    data=st.data(),
    dtype=st.sampled_from([torch.int32, torch.long]),
)
def test_build_csr_and_csr_rows_match_naive(n_users, data, dtype):
    pairs = data.draw(
        st.lists(st.tuples(st.integers(0, n_users - 1), st.integers(0, 50)), max_size=40)
    )
    users = torch.tensor([u for u, _ in pairs], dtype=dtype)
    items = torch.tensor([i for _, i in pairs], dtype=dtype)
    indptr, indices = build_csr(users, items, n_users)
    naive = {u: sorted(i for v, i in pairs if v == u) for u in range(n_users)}
    assert indptr.shape == (n_users + 1,) and indptr[0] == 0
    for u in range(n_users):
        assert indices[indptr[u] : indptr[u + 1]].tolist() == naive[u]
    query = data.draw(st.lists(st.integers(0, n_users - 1), max_size=12))
    rows, cols = csr_rows(indptr, indices, torch.tensor(query, dtype=torch.long))
    want = [(b, i) for b, u in enumerate(query) for i in naive[u]]
    assert list(zip(rows.tolist(), cols.tolist(), strict=True)) == want


def test_rank_batch_marks_only_relevant_unseen_items_as_hits():
    table = torch.tensor([[0.9, 0.8, 0.7, 0.6], [0.1, 0.2, 0.3, 0.4]])
    evalset = EvalSet.build(
        [(torch.tensor([0, 1]), torch.tensor([0, 3]))],
        (torch.tensor([0, 0, 1]), torch.tensor([2, 3, 0])),
        2,
    )
    ranked = rank_batch(TableNet(table), evalset.batch(evalset.users), 4)
    assert ranked.items[0, :3].tolist() == [1, 2, 3] and ranked.items[1, :3].tolist() == [2, 1, 0]
    assert ranked.hits.tolist() == [[False, True, True, False], [False, False, True, False]]
    assert ranked.valid.tolist() == [[True, True, True, False]] * 2
    assert ranked.n_relevant.tolist() == [2, 1]
