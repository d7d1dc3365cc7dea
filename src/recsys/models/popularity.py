"""Popularity: every user gets the items with the most train interactions.

The floor any personalised model must clear, and the cold-start fallback in serving.
"""

from __future__ import annotations

import torch

from recsys.models.base import RecommenderNet


class Popularity(RecommenderNet):
    trainable = False

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__(n_users, n_items)
        self.register_buffer("counts", torch.zeros(n_items))

    def fit(self, items: torch.Tensor) -> None:
        """Count train interactions per item (a tiny index tie-break keeps ranks deterministic)."""
        counts = torch.bincount(items.long(), minlength=self.n_items).float()
        tie_break = torch.arange(self.n_items, 0, -1, dtype=torch.float32) / (self.n_items + 1)
        self.counts.copy_(counts + tie_break)

    def solve(self, users: torch.Tensor, items: torch.Tensor) -> None:
        self.fit(items.cpu())

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.counts[items]

    def score_items(
        self,
        users: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        stop = self.n_items if stop is None else stop
        return self.counts[start:stop].expand(users.shape[0], -1)

    def item_embeddings(self) -> torch.Tensor:
        raise NotImplementedError("a popularity model has no item embeddings for similarity")
