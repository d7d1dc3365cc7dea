"""A net whose scores the test chooses, so every ranking is known in advance."""

from __future__ import annotations

import torch

from recsys.models import RecommenderNet


class TableNet(RecommenderNet):
    """Scores read from a fixed [n_users, n_items] table."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__(*table.shape)
        self.register_buffer("table", table)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.table[users, items]

    def score_items(
        self, users: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        return self.table[users, start : self.n_items if stop is None else stop]
