"""The training objectives over grouped negatives, in one place: the LightningModule's step and
the benchmarks' bare loops call the same functions, so they do the same work.

A batch is users [P] and items [P, 1 + K]: each row's positive i, then K negatives j, drawn
uniformly or by popularity (`data.negative_popularity_exponent`). For popularity draws,
`neg_log_q` [P, K] is log(n_items * q(j)) of each negative: the sampled softmax subtracts it
(the log-Q correction), and it is zero for uniform draws, so uniform needs none.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from recsys.models.base import RecommenderNet, TrainScores

LossTerms = tuple[torch.Tensor, torch.Tensor]


def _l2_per_triplet(out: TrainScores) -> torch.Tensor:
    """Squared L2 norm of the embedding rows per triplet (u, i, j), as if every triplet had
    been looked up on its own: u and i count once for each negative in their row."""
    k = out.scores.shape[1] - 1
    sq = k * (out.user_sq.sum() + out.item_sq[:, 0].sum()) + out.item_sq[:, 1:].sum()
    return sq / (out.scores.shape[0] * k)


def bpr_loss(
    net: RecommenderNet,
    users: torch.Tensor,
    items: torch.Tensor,
    neg_log_q: torch.Tensor | None = None,
) -> LossTerms:
    """BPR (Rendle et al. 2009): mean -log sigmoid(s(u, i) - s(u, j)) over the triplets, and
    the L2 term per triplet. Popularity-drawn negatives are used as drawn (harder negatives,
    the usual BPR variant); `neg_log_q` is accepted for a common signature and not used."""
    out = net.train_scores(users, items)
    diff = out.scores[:, :1] - out.scores[:, 1:]  # [P, K]
    return F.softplus(-diff).mean(), _l2_per_triplet(out)  # softplus(-x) = -log sigmoid(x)


def softmax_loss(
    net: RecommenderNet,
    users: torch.Tensor,
    items: torch.Tensor,
    neg_log_q: torch.Tensor | None = None,
) -> LossTerms:
    """Sampled softmax: mean -log(exp s(u, i) / (exp s(u, i) + sum_j exp s'(u, j))) over the
    rows, so each positive is pushed above its K negatives jointly (the hardest ones weigh
    most), and the same L2 term. s'(u, j) = s(u, j) - log(n_items q(j)): the log-Q correction
    (Bengio & Senecal 2008; Yi et al. 2019) that keeps popularity-drawn negatives an estimate
    of the full softmax instead of a penalty on popular items; zero for uniform draws."""
    out = net.train_scores(users, items)
    scores = out.scores
    if neg_log_q is not None:
        scores = torch.cat([scores[:, :1], scores[:, 1:] - neg_log_q], dim=1)
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores, target), _l2_per_triplet(out)


# `model.loss` -> its function.
LossFn = Callable[[RecommenderNet, torch.Tensor, torch.Tensor, torch.Tensor | None], LossTerms]
LOSSES: dict[str, LossFn] = {
    "bpr": bpr_loss,
    "softmax": softmax_loss,
}


def triplets(items: torch.Tensor) -> int:
    """(user, positive, negative) triplets in a batch of [P, 1 + K] item rows: the unit of
    throughput."""
    return items.shape[0] * (items.shape[1] - 1)
