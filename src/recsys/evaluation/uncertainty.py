"""How sure a test metric is: percentile-bootstrap intervals over users, for one model and
for the paired difference of two models on the same users.

Users are the sampling unit (each contributes one Recall@K / NDCG@K value), so an interval
says how much the mean would move on another draw of users like these. torchmetrics'
BootStrapper resamples per `update` call (batches, not users), so it is done by hand here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from recsys.evaluation.metrics import recall_ndcg
from recsys.evaluation.protocols import RankedBatch

# Resampled values held at once (metrics x resamples x users): about 256 MB of float64.
CHUNK_ELEMENTS = 1 << 25


def per_user(ranked: Sequence[RankedBatch], ks: Sequence[int]) -> tuple[torch.Tensor, dict]:
    """(users [N], {"recall@K" / "ndcg@K": values [N]}) from the ranked test batches."""
    users = torch.cat([b.users for b in ranked]) if ranked else torch.zeros(0, dtype=torch.long)
    values: dict[str, list[torch.Tensor]] = {}
    for batch in ranked:
        for k, (recall, ndcg) in recall_ndcg(batch.hits, batch.n_relevant, ks).items():
            values.setdefault(f"recall@{k}", []).append(recall.double())
            values.setdefault(f"ndcg@{k}", []).append(ndcg.double())
    return users, {name: torch.cat(parts) for name, parts in values.items()}


def bootstrap_means(
    values: dict[str, torch.Tensor], resamples: int = 1000, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Means of each metric over `resamples` resamples of the users (the same resamples for
    every metric, so intervals of related metrics are consistent), shape [resamples]."""
    n = next(iter(values.values())).numel()
    stacked = torch.stack(list(values.values()))  # [metrics, N]
    g = torch.Generator().manual_seed(seed)
    per_chunk = max(1, CHUNK_ELEMENTS // max(1, stacked.numel()))
    means = []
    for start in range(0, resamples, per_chunk):
        draws = min(per_chunk, resamples - start)
        index = torch.randint(n, (draws, n), generator=g)
        means.append(stacked[:, index].mean(-1))  # [metrics, draws]
    out = torch.cat(means, dim=1)
    return dict(zip(values, out, strict=True))


def intervals(
    values: dict[str, torch.Tensor], resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, dict[str, float]]:
    """{metric: {"mean", "low", "high"}}: the mean over users and its percentile interval."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1 or not values or next(iter(values.values())).numel() == 0:
        raise ValueError("need at least one user and one resample")
    tail = (1 - confidence) / 2
    q = torch.tensor([tail, 1 - tail], dtype=torch.float64)
    boot = bootstrap_means(values, resamples, seed)
    out = {}
    for name, v in values.items():
        low, high = torch.quantile(boot[name], q).tolist()
        out[name] = {"mean": float(v.mean()), "low": low, "high": high}
    return out


def paired(
    users_a: torch.Tensor,
    values_a: dict[str, torch.Tensor],
    users_b: torch.Tensor,
    values_b: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Per-user differences a - b, users matched by id (both runs must cover the same users)."""
    if users_a.numel() != users_b.numel() or not torch.equal(
        torch.sort(users_a).values, torch.sort(users_b).values
    ):
        raise ValueError("the two evaluations cover different users: compare on the same split")
    order_a, order_b = torch.argsort(users_a), torch.argsort(users_b)
    return {name: values_a[name][order_a] - values_b[name][order_b] for name in values_a}
