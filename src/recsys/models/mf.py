"""Matrix factorisation: dot product of user and item vectors (plus an item bias).

The baseline Rendle et al. (2020) showed, well tuned, to match or beat NCF.
"""

from __future__ import annotations

import torch
from torch import nn

from recsys.models.base import RecommenderNet, TrainScores, group_rows, rows, sq_norms


class MF(RecommenderNet):
    def __init__(
        self,
        n_users: int,
        n_items: int,
        embedding_dim: int = 64,
        item_bias: bool = True,
        init_std: float = 0.01,
    ) -> None:
        super().__init__(n_users, n_items)
        self.embedding_dim = embedding_dim
        self.item_bias = item_bias
        self.init_std = init_std
        self.user_emb = nn.Embedding(n_users, embedding_dim)
        self.item_emb = nn.Embedding(n_items, embedding_dim)
        self.bias = nn.Embedding(n_items, 1) if item_bias else None
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)
        if self.bias is not None:
            nn.init.zeros_(self.bias.weight)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        s = (self.user_emb(users) * self.item_emb(items)).sum(-1)
        if self.bias is not None:
            s = s + self.bias(items).squeeze(-1)
        return s

    def score_items(self, users, start=0, stop=None, out=None):
        stop = self.n_items if stop is None else stop
        u, q = self.user_emb(users), self.item_emb.weight[start:stop]
        if self.bias is None:
            return torch.mm(u, q.T, out=out)
        return torch.addmm(self.bias.weight[start:stop, 0], u, q.T, out=out)  # bias fused

    def train_scores(self, users, items):
        u, q = rows(self.user_emb, users), group_rows(self.item_emb, items)  # [P, d], [P, M, d]
        s = (u[:, None, :] * q).sum(-1)
        if self.bias is not None:
            s = s + group_rows(self.bias, items)[..., 0]
        return TrainScores(s, sq_norms(u), sq_norms(q))

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight

    def retrieval_users(self, users: torch.Tensor) -> torch.Tensor:
        u = self.user_emb(users)
        return torch.cat([u, u.new_ones(u.shape[0], 1)], 1) if self.bias is not None else u

    def retrieval_items(self) -> torch.Tensor:
        """Item vectors with the bias as a last coordinate: the score exactly."""
        q = self.item_emb.weight
        return torch.cat([q, self.bias.weight], 1) if self.bias is not None else q
