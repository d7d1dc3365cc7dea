"""segments.json's figures (docs/EVALUATION.md, Segments) against plain-Python loops over users
and items on a hand-built case."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.data.evalsets import EvalSet
from recsys.data.processed import Interactions, ProcessedData
from recsys.errors import RecsysError
from recsys.evaluation.options import SegmentSettings
from recsys.evaluation.protocols import evaluate_full
from recsys.evaluation.segments import (
    activity_edges,
    by_activity,
    check_settings,
    popularity_bias,
    run_metrics,
    segment_report,
)
from tests.evaluation.helpers import TableNet

DAY = 86_400_000
N_USERS, N_ITEMS, KS = 40, 30, (3, 5)
TEST_START = 120 * DAY


def interactions(rows: list[tuple[int, int, int]]) -> Interactions:
    u, i, t = zip(*rows, strict=True) if rows else ((), (), ())
    return Interactions(*(torch.tensor(x, dtype=torch.long) for x in (u, i, t)))


def problem(seed: int) -> tuple[ProcessedData, torch.Tensor]:
    """Train before day 100, val days 100-120, test after: item popularity is skewed, items
    first appear through train, item N_ITEMS - 1 only in test, user 0 has three unseen items
    (fewer candidates than K). Scores have no ties."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, N_ITEMS)  # a long tail over the items with a history
    weights /= weights.sum()
    debut = rng.integers(0, 100, N_ITEMS - 1)  # day an item can first be interacted with
    rows: dict[str, list[tuple[int, int, int]]] = {"train": [], "val": [], "test": []}
    for item in range(N_ITEMS - 3):
        rows["train"].append((0, item, int(rng.integers(debut[item], 100)) * DAY))
    for user in range(1, N_USERS):
        items = rng.choice(N_ITEMS - 1, size=int(rng.integers(2, 14)), replace=False, p=weights)
        for item in items:
            day = int(rng.integers(debut[item], 130))
            split = "train" if day < 100 else "val" if day < 120 else "test"
            rows[split].append((user, int(item), day * DAY + int(rng.integers(DAY))))
    for user in range(0, N_USERS, 4):
        rows["test"].append((user, N_ITEMS - 1, TEST_START + DAY))
    data = ProcessedData(
        Path("hand-built"),
        {"n_users": N_USERS, "n_items": N_ITEMS, "split": {"test_start": TEST_START}},
        **{name: interactions(split) for name, split in rows.items()},
    )
    table = torch.from_numpy(rng.permutation(N_USERS * N_ITEMS).reshape(N_USERS, N_ITEMS))
    return data, table.float()


def pairs(split: Interactions) -> list[tuple[int, int, int]]:
    columns = (split.users, split.items, split.timestamps)
    return list(zip(*(c.tolist() for c in columns), strict=True))


def item_metrics(lists, relevant, members, k):
    """Recall/NDCG@k over the relevant items in `members`, users with at least one of them."""
    recall, ndcg, users = 0.0, 0.0, 0
    for user, rel in relevant.items():
        mine = rel & members
        if not mine:
            continue
        users += 1
        gains = [1.0 if item in mine else 0.0 for item in lists[user][:k]]
        recall += sum(gains) / len(mine)
        dcg = sum(g / math.log2(r + 2) for r, g in enumerate(gains))
        ndcg += dcg / sum(1 / math.log2(r + 2) for r in range(min(k, len(mine))))
    slots = [item for top in lists.values() for item in top[:k]]
    share = sum(item in members for item in slots) / len(slots)
    return users, (recall / users, ndcg / users) if users else (None, None), share


def brute_force(data: ProcessedData, table: torch.Tensor, settings: SegmentSettings) -> dict:
    """The segments by the definitions, one user and one item at a time."""
    history = pairs(data.train) + pairs(data.val)
    activity = [sum(u == user for u, _, _ in history) for user in range(N_USERS)]
    popularity = [sum(i == item for _, i, _ in history) for item in range(N_ITEMS)]
    first = [min((t for _, i, t in history if i == item), default=None) for item in range(N_ITEMS)]
    seen = {u: {i for v, i, _ in history if v == u} for u in range(N_USERS)}
    relevant: dict[int, set[int]] = {}
    for user, item, _ in pairs(data.test):
        relevant.setdefault(user, set()).add(item)
    lists = {}
    for user in relevant:
        candidates = [i for i in range(N_ITEMS) if i not in seen[user]]
        lists[user] = sorted(candidates, key=lambda i: -float(table[user, i]))[: max(KS)]

    out: dict = {}
    users = sorted(relevant)
    ordered = sorted(activity[u] for u in users)
    edges = [
        next(v for n, v in enumerate(ordered) if (n + 1) / len(users) >= q) for q in (1 / 3, 2 / 3)
    ]
    out["edges"] = edges
    for name, low, high in (("low", -1, edges[0]), ("mid", *edges), ("high", edges[1], 10**9)):
        mine = [u for u in users if low < activity[u] <= high]
        out["users", name, "n_users"] = len(mine)
        for k in KS:
            rel = {u: relevant[u] for u in mine}
            _, (recall, ndcg), _ = item_metrics(lists, rel, set(range(N_ITEMS)), k)
            out["users", name, f"recall@{k}"], out["users", name, f"ndcg@{k}"] = recall, ndcg

    total = sum(popularity)
    shares = settings.item_popularity_shares
    groups: dict[str, set[int]] = {"head": set(), "mid": set(), "tail": set()}
    for item in range(N_ITEMS):
        above = sum(p for p in popularity if p > popularity[item]) / total
        groups["head" if above < shares[0] else "mid" if above < shares[1] else "tail"].add(item)
    since = TEST_START - settings.new_item_days * DAY
    groups["new"] = {i for i in range(N_ITEMS) if first[i] is None or first[i] >= since}
    for name, members in groups.items():
        out["items", name, "n_items"] = len(members)
        for k in KS:
            n, (recall, ndcg), share = item_metrics(lists, relevant, members, k)
            out["items", name, "n_users"] = n
            out["items", name, f"recall@{k}"], out["items", name, f"ndcg@{k}"] = recall, ndcg
            out["items", name, f"recommended_share@{k}"] = share

    for k in KS:
        slots = [item for top in lists.values() for item in top[:k]]
        counts = [slots.count(item) for item in range(N_ITEMS)]
        out[f"coverage@{k}"] = sum(c > 0 for c in counts) / N_ITEMS
        out[f"avg_popularity_percentile@{k}"] = sum(
            100 * sum(p < popularity[item] for p in popularity) / N_ITEMS for item in slots
        ) / len(slots)
        pair_gaps = sum(abs(a - b) for a in counts for b in counts)  # Gini: mean absolute gap
        out[f"gini@{k}"] = pair_gaps / (2 * N_ITEMS * sum(counts))
    return out


def report_for(data, table, settings):
    evalset = EvalSet.for_split(data, "test")
    _, ranked = evaluate_full(TableNet(table), evalset, KS, batch_size=7)
    return segment_report(ranked, evalset, data, KS, settings)


@pytest.mark.parametrize(
    "seed, settings",
    [
        (0, SegmentSettings()),
        (1, SegmentSettings(item_popularity_shares=(0.5, 0.9), new_item_days=45)),
    ],
)
def test_segments_match_brute_force(seed, settings):
    data, table = problem(seed)
    report = report_for(data, table, settings)
    want = brute_force(data, table, settings)

    activity = report["user_activity"]
    assert activity["edges"] == want["edges"] and activity["edges_from"] == "terciles"
    for bucket in activity["buckets"]:
        name = bucket["name"]
        assert bucket["n_users"] == want["users", name, "n_users"] > 0, name
        for k in KS:
            for metric in ("recall", "ndcg"):
                assert bucket[f"test/{metric}@{k}"] == pytest.approx(
                    want["users", name, f"{metric}@{k}"]
                )

    buckets = [*report["item_popularity"]["buckets"], {"name": "new", **report["new_items"]}]
    assert [b["name"] for b in buckets] == ["head", "mid", "tail", "new"]
    for bucket in buckets:
        name = bucket["name"]
        assert bucket["n_items"] == want["items", name, "n_items"], name
        assert bucket["n_users"] == want["items", name, "n_users"], name
        for k in KS:
            for metric in ("recall", "ndcg", "recommended_share"):
                key = f"test/{metric}@{k}"
                assert bucket[key] == pytest.approx(want["items", name, f"{metric}@{k}"]), (
                    name,
                    key,
                )
    assert report["new_items"]["n_relevant_items_without_history"] == 1  # item N_ITEMS - 1
    assert 0 < report["new_items"]["n_relevant_items"] < report["new_items"]["n_items"]
    assert sum(b["n_items"] for b in report["item_popularity"]["buckets"]) == N_ITEMS
    coverage = {f"test/{key}": v for key, v in want.items() if isinstance(key, str) and "@" in key}
    assert report["coverage"] == pytest.approx(coverage)


def test_popularity_bias_by_hand():
    """Items 0..3 with popularity 0, 1, 1, 5, recommended slots 3, 3, 1."""
    bias = popularity_bias(torch.tensor([3, 3, 1]), torch.tensor([0, 1, 1, 5]))
    # coverage 2 of 4 items; percentiles 75, 75, 25; counts 0, 1, 0, 2: the absolute
    # differences over ordered pairs sum to 14, Gini = 14 / (2 * 4 items * 3 slots)
    assert bias == pytest.approx(
        {"coverage": 0.5, "avg_popularity_percentile": 175 / 3, "gini": 14 / 24}
    )


@pytest.mark.parametrize("n", [30, 31, 32])
def test_activity_terciles_are_equally_populated(n):
    activity = torch.from_numpy(np.random.default_rng(n).permutation(np.arange(5, 5 + 3 * n, 3)))
    users = torch.arange(n)
    values = {"ndcg@10": users.double()}
    edges = activity_edges(activity, None)
    buckets = by_activity(users, values, activity, edges)
    sizes = [b["n_users"] for b in buckets]
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
    assert buckets[0]["activity"][1] == edges[0] and buckets[1]["activity"][1] == edges[1]
    assert buckets[0]["activity"][1] < buckets[1]["activity"][0]
    for b in buckets:  # each bucket's mean is over exactly its users
        mine = [u for u in range(n) if b["activity"][0] <= activity[u] <= b["activity"][1]]
        assert b["test/ndcg@10"] == pytest.approx(sum(mine) / len(mine))


def test_fixed_edges_and_empty_buckets():
    activity = torch.tensor([1, 2, 2, 9])
    buckets = by_activity(torch.arange(4), {"recall@5": torch.ones(4)}, activity, [2, 8])
    assert [(b["n_users"], b["activity"]) for b in buckets] == [(3, [1, 2]), (0, None), (1, [9, 9])]
    assert buckets[1]["test/recall@5"] is None
    metrics = run_metrics(
        {
            "coverage": {"test/coverage@5": 0.5},
            "user_activity": {"buckets": [{"name": b["name"], **b} for b in buckets]},
            "item_popularity": {"buckets": []},
            "new_items": {"n_users": 0, "n_relevant": 0, "test/recall@5": None},
        }
    )
    assert metrics == {
        "test/coverage@5": 0.5,
        "test/segment/user_activity/low/n_users": 3.0,
        "test/segment/user_activity/low/recall@5": 1.0,
        "test/segment/user_activity/mid/n_users": 0.0,
        "test/segment/user_activity/high/n_users": 1.0,
        "test/segment/user_activity/high/recall@5": 1.0,
        "test/segment/new_items/n_users": 0.0,
        "test/segment/new_items/n_relevant": 0.0,
    }


@pytest.mark.parametrize(
    "settings, key",
    [
        (SegmentSettings(user_activity_edges=(5,)), "user_activity_edges"),
        (SegmentSettings(user_activity_edges=(9, 3)), "user_activity_edges"),
        (SegmentSettings(user_activity_edges=(1.5, 3)), "user_activity_edges"),
        (SegmentSettings(item_popularity_shares=(0.8, 0.2)), "item_popularity_shares"),
        (SegmentSettings(item_popularity_shares=(0.2, 1.0)), "item_popularity_shares"),
        (SegmentSettings(new_item_days=0), "new_item_days"),
    ],
)
def test_bad_settings_name_their_key(settings, key):
    with pytest.raises(RecsysError, match=f"eval.segments.{key}"):
        check_settings(settings)
