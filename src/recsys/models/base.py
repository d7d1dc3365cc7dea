"""What every recommender network provides: pairwise scores and full-catalogue scores.

Nets are plain `nn.Module`s (no Lightning, no MLflow), rebuilt anywhere from `spec()`.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn


class Recommender(nn.Module):
    """Base class: subclasses implement `score` and `score_items`."""

    n_users: int
    n_items: int
    trainable: bool = True
    # Item-side tensors of `score_items` precomputed for inference (see `use_item_side`).
    frozen_items: dict[str, torch.Tensor] | None = None

    def __init__(self, n_users: int, n_items: int) -> None:
        super().__init__()
        if n_users < 1 or n_items < 1:
            raise ValueError(f"need at least one user and one item, got {n_users} and {n_items}")
        self.n_users = int(n_users)
        self.n_items = int(n_items)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of (users[i], items[i]) pairs, shape [N]."""
        raise NotImplementedError

    def score_items(
        self, users: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """Scores of every user in `users` against items start..stop-1, shape [B, stop-start]."""
        raise NotImplementedError

    def regularization(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        """Squared L2 norm of the embedding rows this batch touches (BPR's usual penalty)."""
        return users.new_zeros((), dtype=torch.float32)

    def bpr_terms(
        self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training step's forward pass: s(u, pos) - s(u, neg), shape [N], and
        `regularization(users, pos, neg)`. Nets override it to look each embedding table up
        once per step: every extra lookup costs a table-sized gradient in the backward pass."""
        diff = self.score(users, pos) - self.score(users, neg)
        return diff, self.regularization(users, pos, neg)

    def item_embeddings(self) -> torch.Tensor:
        """Item vectors for item-to-item similarity, shape [n_items, d]."""
        raise NotImplementedError

    def item_side(self) -> dict[str, torch.Tensor]:
        """The item-only factors of `score_items`, computed once: serving stores them so a
        request pays only for the user side. Empty when scoring uses raw weights anyway."""
        return {}

    def use_item_side(self, tensors: dict[str, torch.Tensor]) -> None:
        """Score from precomputed `item_side()` tensors: inference only, as they go stale
        when the weights change."""
        self.frozen_items = dict(tensors) if tensors else None

    def spec(self) -> dict[str, Any]:
        """Constructor arguments with a Hydra `_target_`: enough to rebuild the net from weights."""
        cls = type(self)
        params = inspect.signature(cls.__init__).parameters
        args = {name: getattr(self, name) for name in params if name != "self"}
        return {"_target_": f"{cls.__module__}.{cls.__qualname__}", **_plain(args)}


def _plain(value: Any) -> Any:
    """Lists/tuples/dicts of builtins only, so checkpoints load with `weights_only=True`."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def rows(table: nn.Embedding, index: torch.Tensor) -> torch.Tensor:
    """`table(index)` for the training step. index_select's backward (index_add) is about 1.7x
    faster on CPU than the embedding backward, which dispatches one add per looked-up row."""
    return table.weight.index_select(0, index)


def embedding_sq_norm(*rows: torch.Tensor) -> torch.Tensor:
    """Sum of squared entries of the given embedding rows."""
    return sum(r.pow(2).sum() for r in rows)  # type: ignore[return-value]
