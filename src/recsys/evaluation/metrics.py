"""Recall@K and NDCG@K with binary gains (docs/REFERENCE.md, Evaluation), per user and as a
torchmetrics Metric.

Per-user values come from the top-k lists; the Metric only sums them (and counts users) with
`dist_reduce_fx="sum"`, so under DDP each rank's disjoint users add up exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from recsys.evaluation import DEFAULT_KS


def hits_at(
    top_items: torch.Tensor,
    valid: torch.Tensor,
    rel_rows: torch.Tensor,
    rel_items: torch.Tensor,
    n_items: int,
) -> torch.Tensor:
    """hits[b, r]: the item at rank r of user b is relevant (and a real candidate)."""
    rel_keys = torch.sort(rel_rows.long() * n_items + rel_items.long()).values
    rows = torch.arange(top_items.shape[0], device=top_items.device)[:, None]
    keys = rows * n_items + top_items.long()
    if rel_keys.numel() == 0:
        return torch.zeros_like(valid)
    pos = torch.searchsorted(rel_keys, keys).clamp_(max=rel_keys.numel() - 1)
    return (rel_keys[pos] == keys) & valid


def recall_ndcg(
    hits: torch.Tensor, n_relevant: torch.Tensor, ks: Sequence[int]
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per-user (recall@k, ndcg@k) for each k; users need at least one relevant item."""
    k_max = max(ks)
    if hits.shape[1] < k_max:  # fewer candidates than k: the missing ranks are misses
        hits = torch.nn.functional.pad(hits, (0, k_max - hits.shape[1]))
    hits = hits[:, :k_max].float()
    discount = 1.0 / torch.log2(torch.arange(2, k_max + 2, device=hits.device, dtype=torch.float))
    dcg = torch.cumsum(hits * discount, dim=1)
    ideal = torch.cumsum(discount, dim=0)
    n_hits = torch.cumsum(hits, dim=1)
    n_rel = n_relevant.float()
    out = {}
    for k in ks:
        idcg = ideal[torch.clamp(n_relevant.long(), max=k) - 1]
        out[k] = (n_hits[:, k - 1] / n_rel, dcg[:, k - 1] / idcg)
    return out


class RankingMetrics(Metric):
    """Mean Recall@K / NDCG@K over users; `compute()` returns {'recall@K', 'ndcg@K', 'n_users'}."""

    full_state_update = False

    def __init__(self, ks: Sequence[int] = DEFAULT_KS) -> None:
        super().__init__()
        if not ks or min(ks) < 1:
            raise ValueError(f"cutoffs must be positive integers, got {list(ks)}")
        self.ks = sorted(set(int(k) for k in ks))
        n = len(self.ks)
        self.add_state("recall_sum", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("ndcg_sum", torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_users", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, hits: torch.Tensor, n_relevant: torch.Tensor) -> None:
        per_user = recall_ndcg(hits, n_relevant, self.ks)
        for i, k in enumerate(self.ks):
            recall, ndcg = per_user[k]
            self.recall_sum[i] += recall.double().sum()
            self.ndcg_sum[i] += ndcg.double().sum()
        self.n_users += hits.shape[0]

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.n_users.clamp(min=1).double()
        out: dict[str, torch.Tensor] = {}
        for i, k in enumerate(self.ks):
            out[f"recall@{k}"] = (self.recall_sum[i] / n).float()
            out[f"ndcg@{k}"] = (self.ndcg_sum[i] / n).float()
        out["n_users"] = self.n_users.clone()
        return out
