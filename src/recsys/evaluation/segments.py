"""Test metrics by segment (docs/EVALUATION.md, Segments): users by activity, relevant items by
popularity and by age, and what the top-K lists cover.

Everything comes from the ranked batches `evaluate_full` returns plus the eval set's relevant
items: nothing is ranked again. "History" is what a test evaluation masks: train + val.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import torch

from recsys.data.evalsets import EvalSet
from recsys.data.processed import ProcessedData
from recsys.errors import RecsysError
from recsys.evaluation.metrics import recall_ndcg
from recsys.evaluation.options import SegmentSettings
from recsys.evaluation.protocols import RankedBatch
from recsys.evaluation.uncertainty import per_user
from recsys.sparse import csr_rows

ACTIVITY_BUCKETS = ("low", "mid", "high")
POPULARITY_BUCKETS = ("head", "mid", "tail")
DAY_MS = 86_400_000
# first_seen of an item without any train or val interaction.
NEVER = torch.iinfo(torch.long).max
DEFAULTS = SegmentSettings()
# Bucket entries' counts that become run metrics beside the test/ values.
RUN_COUNTS = ("n_users", "n_relevant")


@dataclass(frozen=True)
class History:
    """Train + val counted per user and per item, and when each item first appeared."""

    activity: torch.Tensor  # [n_users] interactions
    popularity: torch.Tensor  # [n_items] interactions
    first_seen: torch.Tensor  # [n_items] ms; NEVER for an item without any
    test_start: int  # ms


def history(data: ProcessedData) -> History:
    """The test boundary is metadata's split.test_start; a leave-last-out split has none, so
    the newest history timestamp stands in for it."""
    users = torch.cat([data.train.users, data.val.users])
    items = torch.cat([data.train.items, data.val.items])
    stamps = torch.cat([data.train.timestamps, data.val.timestamps])
    first = torch.full((data.n_items,), NEVER, dtype=torch.long)
    first.scatter_reduce_(0, items, stamps, "amin")
    start = (data.metadata.get("split") or {}).get("test_start")
    return History(
        activity=torch.bincount(users, minlength=data.n_users),
        popularity=torch.bincount(items, minlength=data.n_items),
        first_seen=first,
        test_start=int(start) if start is not None else int(stamps.max()),
    )


def check_settings(settings: SegmentSettings) -> None:
    """Refuse settings that cannot define the buckets, naming the key."""
    edges = settings.user_activity_edges
    if edges is not None and (
        len(edges) != 2
        or not all(isinstance(e, int) for e in edges)
        or not 0 <= edges[0] < edges[1]
    ):
        raise RecsysError(
            "eval.segments.user_activity_edges must be null (terciles) or two increasing "
            f"interaction counts [e1, e2] (low <= e1 < mid <= e2 < high), got {list(edges)}"
        )
    shares = settings.item_popularity_shares
    if len(shares) != 2 or not 0 < shares[0] < shares[1] < 1:
        raise RecsysError(
            "eval.segments.item_popularity_shares must be two cumulative interaction shares "
            f"0 < head < mid < 1, e.g. [0.2, 0.8], got {list(shares)}"
        )
    if not settings.new_item_days > 0:
        raise RecsysError(f"eval.segments.new_item_days must be > 0, got {settings.new_item_days}")


def activity_edges(activity: torch.Tensor, edges: Sequence[int] | None) -> list[int]:
    """[e1, e2]: the given edges, or the terciles of `activity` (inverted-CDF quantiles, so
    distinct counts split into buckets whose sizes differ by at most one)."""
    if edges is not None:
        return [int(e) for e in edges]
    cut = np.quantile(activity.numpy(), [1 / 3, 2 / 3], method="inverted_cdf")
    return [int(c) for c in cut]


def popularity_buckets(popularity: torch.Tensor, shares: Sequence[float]) -> torch.Tensor:
    """Per item 0 (head), 1 (mid) or 2 (tail): head while the items strictly more popular hold
    under shares[0] of the interactions, tail once they hold shares[1]; ties share a bucket."""
    ascending = torch.sort(popularity).values
    at_most = torch.cumsum(ascending, 0)  # interactions of the items no more popular than each
    total = int(at_most[-1])
    above = total - at_most[torch.searchsorted(ascending, popularity, right=True) - 1]
    share = above.double() / max(1, total)
    return torch.bucketize(share, torch.tensor(list(shares), dtype=torch.double), right=True)


def item_group_metrics(
    ranked: Sequence[RankedBatch],
    evalset: EvalSet,
    group: torch.Tensor,
    n_groups: int,
    ks: Sequence[int],
) -> list[dict[str, Any]]:
    """Per item group g (group[item] in 0..n_groups-1, -1 for none), over the users with at
    least one relevant item in g: Recall@K = hits among those items / their number, NDCG@K with
    binary gains on them at their ranks in the full list, ideal DCG over min(K, their number);
    `recommended_share@K`: the share of all valid top-K slots holding an item of g."""
    n_ks = len(ks)
    sums = torch.zeros(n_groups, 2 * n_ks, dtype=torch.double)
    n_users = torch.zeros(n_groups, dtype=torch.long)
    n_relevant = torch.zeros(n_groups, dtype=torch.long)
    slots = torch.zeros(n_groups, n_ks, dtype=torch.long)
    all_slots = torch.zeros(n_ks, dtype=torch.long)
    for batch in ranked:
        rows, items = csr_rows(evalset.rel_indptr, evalset.rel_indices, batch.users)
        of_item = group[items]
        keep = of_item >= 0
        counts = torch.bincount(
            rows[keep] * n_groups + of_item[keep], minlength=batch.users.numel() * n_groups
        ).view(-1, n_groups)
        top = group[batch.items]
        for g in range(n_groups):
            has, in_g = counts[:, g] > 0, top == g
            per_k = recall_ndcg((batch.hits & in_g)[has], counts[has, g], ks)
            for i, k in enumerate(ks):
                sums[g, i] += per_k[k][0].double().sum()
                sums[g, n_ks + i] += per_k[k][1].double().sum()
                slots[g, i] += int((batch.valid[:, :k] & in_g[:, :k]).sum())
            n_users[g] += int(has.sum())
            n_relevant[g] += int(counts[:, g].sum())
        for i, k in enumerate(ks):
            all_slots[i] += int(batch.valid[:, :k].sum())
    out = []
    for g in range(n_groups):
        n = int(n_users[g])
        entry: dict[str, Any] = {"n_users": n, "n_relevant": int(n_relevant[g])}
        for i, k in enumerate(ks):
            entry[f"test/recall@{k}"] = float(sums[g, i]) / n if n else None
            entry[f"test/ndcg@{k}"] = float(sums[g, n_ks + i]) / n if n else None
            entry[f"test/recommended_share@{k}"] = int(slots[g, i]) / max(1, int(all_slots[i]))
        out.append(entry)
    return out


def popularity_bias(top: torch.Tensor, popularity: torch.Tensor) -> dict[str, float]:
    """Over recommended slots `top` (item ids): the share of the catalogue recommended, the
    mean popularity percentile of what is recommended (the share of items strictly less popular:
    50 = unbiased, near 100 = only blockbusters) and the Gini index of how often each catalogue
    item is recommended (0 = all equally, near 1 = a few items take every slot)."""
    n_items = popularity.numel()
    below = torch.searchsorted(torch.sort(popularity).values, popularity[top])
    counts = torch.sort(torch.bincount(top, minlength=n_items).double()).values
    order = torch.arange(1, n_items + 1, dtype=torch.double)
    total = float(counts.sum())
    return {
        "coverage": top.unique().numel() / n_items,
        "avg_popularity_percentile": 100.0 * float(below.double().mean()) / n_items
        if top.numel()
        else 0.0,
        "gini": float(((2 * order - n_items - 1) * counts).sum()) / (n_items * total)
        if total
        else 0.0,
    }


def coverage(
    ranked: Sequence[RankedBatch], popularity: torch.Tensor, ks: Sequence[int]
) -> dict[str, float]:
    """`popularity_bias` of every evaluated user's top-K, for each K: test/coverage@K, ..."""
    out = {}
    for k in ks:
        top = torch.cat([b.items[:, :k][b.valid[:, :k]] for b in ranked])
        out.update({f"test/{name}@{k}": v for name, v in popularity_bias(top, popularity).items()})
    return out


def _span(values: torch.Tensor) -> list[int] | None:
    return [int(values.min()), int(values.max())] if values.numel() else None


def by_activity(
    users: torch.Tensor, values: dict[str, torch.Tensor], activity: torch.Tensor, edges: list[int]
) -> list[dict[str, Any]]:
    """The per-user metrics averaged within low (<= e1), mid and high (> e2) activity."""
    of_user = activity[users]
    bucket = torch.bucketize(of_user, torch.tensor(edges, dtype=of_user.dtype))
    out = []
    for b, name in enumerate(ACTIVITY_BUCKETS):
        mask = bucket == b
        n = int(mask.sum())
        entry: dict[str, Any] = {"name": name, "activity": _span(of_user[mask]), "n_users": n}
        for metric, v in values.items():
            entry[f"test/{metric}"] = float(v[mask].mean()) if n else None
        out.append(entry)
    return out


def segment_report(
    ranked: Sequence[RankedBatch],
    evalset: EvalSet,
    data: ProcessedData,
    ks: Sequence[int],
    settings: SegmentSettings = DEFAULTS,
) -> dict[str, Any]:
    """segments.json's content for the test evaluation in `ranked` (over `evalset`)."""
    check_settings(settings)
    ks = sorted(ks)
    past = history(data)
    users, values = per_user(ranked, ks)
    edges = activity_edges(past.activity[users], settings.user_activity_edges)

    popular = popularity_buckets(past.popularity, settings.item_popularity_shares)
    total = max(1, int(past.popularity.sum()))
    items = []
    for b, metrics in enumerate(item_group_metrics(ranked, evalset, popular, 3, ks)):
        counts = past.popularity[popular == b]
        items.append(
            {
                "name": POPULARITY_BUCKETS[b],
                "n_items": counts.numel(),
                "interaction_share": int(counts.sum()) / total,
                "popularity": _span(counts),
                **metrics,
            }
        )

    since = past.test_start - round(settings.new_item_days * DAY_MS)
    unseen = past.first_seen == NEVER
    new = (past.first_seen >= since) | unseen
    relevant = torch.unique(csr_rows(evalset.rel_indptr, evalset.rel_indices, users)[1])
    (new_metrics,) = item_group_metrics(ranked, evalset, new.long() - 1, 1, ks)
    start = datetime.fromtimestamp(past.test_start / 1000, tz=UTC)
    return {
        "k": ks,
        "history": "train + val",
        "user_activity": {
            "edges": edges,
            "edges_from": "eval.segments.user_activity_edges"
            if settings.user_activity_edges is not None
            else "terciles",
            "buckets": by_activity(users, values, past.activity, edges),
        },
        "item_popularity": {
            "shares": list(settings.item_popularity_shares),
            "buckets": items,
        },
        "new_items": {
            "days": settings.new_item_days,
            "test_start": start.isoformat(timespec="seconds"),
            "n_items": int(new.sum()),
            "n_items_without_history": int(unseen.sum()),
            "n_relevant_items": int(new[relevant].sum()),
            "n_relevant_items_without_history": int(unseen[relevant].sum()),
            **new_metrics,
        },
        "coverage": coverage(ranked, past.popularity, ks),
    }


def run_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The report as flat metrics: test/segment/<segment>[/<bucket>]/<metric> and the coverage
    keys as they are; empty buckets (no value) are left out."""
    out: dict[str, float] = dict(report["coverage"])

    def add(prefix: str, entry: dict[str, Any]) -> None:
        for key, value in entry.items():
            if value is not None and (key.startswith("test/") or key in RUN_COUNTS):
                out[f"{prefix}/{key.removeprefix('test/')}"] = float(value)

    for segment in ("user_activity", "item_popularity"):
        for bucket in report[segment]["buckets"]:
            add(f"test/segment/{segment}/{bucket['name']}", bucket)
    add("test/segment/new_items", report["new_items"])
    return out


def table(report: dict[str, Any], k: int) -> list[str]:
    """A short console table at cutoff k: users, Recall, NDCG and top-K share per segment."""

    def number(value: float | None, form: str) -> str:
        return "-" if value is None else format(value, form)

    def row(label: str, entry: dict[str, Any], share: bool) -> str:
        text = (
            f"{label:<32} {entry['n_users']:>7,}  {number(entry[f'test/recall@{k}'], '.4f'):>7}"
            f"  {number(entry[f'test/ndcg@{k}'], '.4f'):>7}"
        )
        return text + (f"  {entry[f'test/recommended_share@{k}']:>6.1%}" if share else "")

    lines = [f"{'segment':<32} {'users':>7}  {f'R@{k}':>7}  {f'N@{k}':>7}  top-{k}"]
    for b in report["user_activity"]["buckets"]:
        span = "" if b["activity"] is None else f" {b['activity'][0]}-{b['activity'][1]}"
        lines.append(row(f"users {b['name']} activity{span}", b, share=False))
    for b in report["item_popularity"]["buckets"]:
        lines.append(row(f"items {b['name']} ({b['n_items']:,})", b, share=True))
    new = report["new_items"]
    recent = new["n_items"] - new["n_items_without_history"]
    label = f"items new, {new['days']:g} days ({recent:,} + {new['n_items_without_history']:,})"
    lines.append(row(label, new, share=True))
    cov = report["coverage"]
    lines.append(
        f"coverage@{k} {cov[f'test/coverage@{k}']:.1%}, mean popularity percentile "
        f"{cov[f'test/avg_popularity_percentile@{k}']:.1f}, Gini {cov[f'test/gini@{k}']:.3f}"
    )
    return lines
