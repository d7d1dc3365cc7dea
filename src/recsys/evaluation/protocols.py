"""Evaluation protocols over a trained net: full ranking (the default) and the NCF paper's
sampled protocol. Validation, `recsys-eval` and the tests share `rank_batch`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace

import torch

from recsys.data.evalsets import EvalSet
from recsys.data.sampling import NegativeSampler
from recsys.evaluation.metrics import RankingMetrics, hits_at
from recsys.evaluation.ranking import masked_topk
from recsys.models.base import RecommenderNet


@dataclass(frozen=True)
class RankedBatch:
    users: torch.Tensor  # [B]
    scores: torch.Tensor  # [B, K]; -inf where a user ran out of unseen items
    items: torch.Tensor  # [B, K]
    hits: torch.Tensor  # [B, K] bool
    n_relevant: torch.Tensor  # [B]

    @property
    def valid(self) -> torch.Tensor:
        """Real candidates: masked (seen) slots are -inf."""
        return self.scores > -torch.inf

    def cpu(self) -> RankedBatch:
        return replace(self, **{f.name: getattr(self, f.name).cpu() for f in fields(self)})


def net_device(net: RecommenderNet) -> torch.device:
    """Where the net's weights live (a popularity net has buffers only)."""
    tensor = next(iter(net.parameters()), None)
    if tensor is None:
        tensor = next(iter(net.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


@torch.no_grad()
def rank_batch(net: RecommenderNet, batch: dict[str, torch.Tensor], k: int) -> RankedBatch:
    """Top-k unseen items of each user in the batch, and which of them are relevant."""
    scores, items = masked_topk(net, batch["users"], batch["seen_rows"], batch["seen_items"], k)
    valid = scores > -torch.inf
    hits = hits_at(items, valid, batch["rel_rows"], batch["rel_items"], net.n_items)
    return RankedBatch(batch["users"], scores, items, hits, batch["n_relevant"])


def iterate_ranked(
    net: RecommenderNet, evalset: EvalSet, k: int, batch_size: int = 1024
) -> Iterator[RankedBatch]:
    users, device = evalset.users, net_device(net)
    for lo in range(0, users.numel(), batch_size):
        batch = evalset.batch(users[lo : lo + batch_size])
        yield rank_batch(net, {name: t.to(device) for name, t in batch.items()}, k)


def evaluate_full(
    net: RecommenderNet, evalset: EvalSet, ks: Sequence[int], batch_size: int = 1024
) -> tuple[dict[str, float], list[RankedBatch]]:
    """Mean Recall@K / NDCG@K over the eval set's users, plus every user's top-max(K) list
    (in host memory), computed where the net lives."""
    metric = RankingMetrics(ks).to(net_device(net))
    ranked = []
    for batch in iterate_ranked(net, evalset, max(ks), batch_size):
        metric.update(batch.hits, batch.n_relevant)
        ranked.append(batch.cpu())
    values = {name: float(v) for name, v in metric.compute().items()}
    values["n_users"] = int(values["n_users"])
    return values, ranked


@torch.no_grad()
def evaluate_sampled(
    net: RecommenderNet,
    users: torch.Tensor,
    items: torch.Tensor,
    known: NegativeSampler,
    ks: Sequence[int] = (10,),
    n_negatives: int = 99,
    seed: int = 0,
    batch_size: int = 4096,
) -> dict[str, float]:
    """He et al. (2017): rank each held-out (user, item) among `n_negatives` items the user
    never interacted with (drawn uniformly, with replacement); HR@K and NDCG@K over pairs.

    Ties count against the held-out item, so a constant scorer gets no credit.
    """
    g = torch.Generator().manual_seed(seed)
    device = net_device(net)
    ranks = []
    for lo in range(0, users.numel(), batch_size):
        u, i = users[lo : lo + batch_size], items[lo : lo + batch_size]
        u_rep = u.repeat_interleave(n_negatives)
        negatives = known.sample(u_rep, g)  # on the host: the same negatives on every device
        pos = net.score(u.to(device), i.to(device)).float()
        neg = net.score(u_rep.to(device), negatives.to(device)).float().view(-1, n_negatives)
        ranks.append((neg >= pos[:, None]).sum(1).cpu())
    rank = torch.cat(ranks) if ranks else torch.empty(0, dtype=torch.long)
    n = max(1, rank.numel())
    out: dict[str, float] = {}
    for k in ks:
        hit = rank < k
        out[f"sampled/hr@{k}"] = float(hit.sum()) / n
        out[f"sampled/ndcg@{k}"] = float((hit / torch.log2(rank.float() + 2)).sum()) / n
    out["sampled/n_pairs"] = int(rank.numel())
    return out
