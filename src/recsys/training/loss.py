"""The training objectives over grouped negatives, in one place: the LightningModule's step and
the benchmarks' bare loops call the same functions, so they do the same work.

A batch is users [P] and items [P, 1 + K]: each row's positive i, then K uniform negatives j.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from recsys.models.base import Recommender, TrainScores

LossTerms = tuple[torch.Tensor, torch.Tensor]


def _l2_per_triplet(out: TrainScores) -> torch.Tensor:
    """Squared L2 norm of the embedding rows per triplet (u, i, j), as if every triplet had
    been looked up on its own: u and i count once for each negative in their row."""
    k = out.scores.shape[1] - 1
    sq = k * (out.user_sq.sum() + out.item_sq[:, 0].sum()) + out.item_sq[:, 1:].sum()
    return sq / (out.scores.shape[0] * k)


def bpr_loss(net: Recommender, users: torch.Tensor, items: torch.Tensor) -> LossTerms:
    """BPR (Rendle et al. 2009): mean -log sigmoid(s(u, i) - s(u, j)) over the triplets, and
    the L2 term per triplet."""
    out = net.train_scores(users, items)
    diff = out.scores[:, :1] - out.scores[:, 1:]  # [P, K]
    return F.softplus(-diff).mean(), _l2_per_triplet(out)  # softplus(-x) = -log sigmoid(x)


def softmax_loss(net: Recommender, users: torch.Tensor, items: torch.Tensor) -> LossTerms:
    """Sampled softmax: mean -log(exp s(u, i) / (exp s(u, i) + sum_j exp s(u, j))) over the
    rows, so each positive is pushed above its K negatives jointly (the hardest ones weigh
    most), and the same L2 term. Negatives are uniform, so the log-Q correction of sampled
    softmax is the same constant for every item and drops out."""
    out = net.train_scores(users, items)
    target = torch.zeros(out.scores.shape[0], dtype=torch.long, device=out.scores.device)
    return F.cross_entropy(out.scores, target), _l2_per_triplet(out)


# `model.loss` -> its function.
LOSSES: dict[str, Callable[[Recommender, torch.Tensor, torch.Tensor], LossTerms]] = {
    "bpr": bpr_loss,
    "softmax": softmax_loss,
}


def triplets(items: torch.Tensor) -> int:
    """(user, positive, negative) triplets in a batch of [P, 1 + K] item rows: the unit of
    throughput."""
    return items.shape[0] * (items.shape[1] - 1)
