"""The BPR objective over grouped negatives, in one place: the LightningModule's step and the
benchmarks' bare loops call the same function, so they do the same work."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recsys.models.base import Recommender


def bpr_loss(
    net: Recommender, users: torch.Tensor, items: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean -log sigmoid(s(u, i) - s(u, j)) over the batch's triplets (items[:, 0] is each
    row's positive i, items[:, 1:] its negatives j), and the squared L2 norm of the embedding
    rows, per triplet, as if every triplet had been looked up on its own."""
    out = net.train_scores(users, items)
    diff = out.scores[:, :1] - out.scores[:, 1:]  # [P, K]
    k = diff.shape[1]
    # A triplet penalises its u, i and j rows: u and i once for each negative in their row.
    sq = k * (out.user_sq.sum() + out.item_sq[:, 0].sum()) + out.item_sq[:, 1:].sum()
    return F.softplus(-diff).mean(), sq / diff.numel()  # softplus(-x) = -log sigmoid(x), stable


def triplets(items: torch.Tensor) -> int:
    """BPR triplets in a batch of [P, 1 + K] item rows: the unit of throughput."""
    return items.shape[0] * (items.shape[1] - 1)
