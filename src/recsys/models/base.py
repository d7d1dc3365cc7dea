"""What every recommender network provides: pairwise scores and full-catalogue scores.

Nets are plain `nn.Module`s (no Lightning, no MLflow), rebuilt anywhere from `spec()`.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch
from torch import nn


class TrainScores(NamedTuple):
    """The training forward pass over groups: each user against its own row of items."""

    scores: torch.Tensor  # [P, M]: s(users[p], items[p, m])
    user_sq: torch.Tensor  # [P]: squared L2 norm of users[p]'s embedding rows, all tables
    item_sq: torch.Tensor  # [P, M]: the same for items[p, m]


class RecommenderNet(nn.Module):
    """The network base class (the math of a recommender; the service is `serving.service`):
    subclasses implement `score` and `score_items`."""

    n_users: int
    n_items: int
    # Gradient nets train on the loss; the others (`trainable = False`) are fitted by `solve`
    # on the train interactions, once per epoch: in closed form (`single_solve`: one epoch
    # suffices) or by solver sweeps (each epoch one more, validated like a gradient epoch).
    trainable: bool = True
    single_solve: bool = True
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
        self,
        users: torch.Tensor,
        start: int = 0,
        stop: int | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores of every user in `users` against items start..stop-1, shape [B, stop-start].
        Nets may write them into `out` (float32, that shape) and return it: full-catalogue
        ranking reuses one buffer, as a fresh allocation of this size is page-faulted in anew
        each time (half the time of MF's matmul on CPU)."""
        raise NotImplementedError

    def train_scores(self, users: torch.Tensor, items: torch.Tensor) -> TrainScores:
        """Scores of users [P] against their groups of items [P, M] (for BPR, a positive and
        its negatives), with the squared norms of the embedding rows behind them (for the L2
        penalty). Nets override it to look each embedding table up once per step (every extra
        lookup costs a table-sized gradient) and to compute a user's side once per group."""
        n, m = items.shape
        scores = self.score(users.repeat_interleave(m), items.reshape(-1)).view(n, m)
        return TrainScores(scores, scores.new_zeros(n), scores.new_zeros(n, m))

    def solve(self, users: torch.Tensor, items: torch.Tensor) -> None:
        """Fit (or refine, by one sweep) on the train pairs: nets with `trainable = False`."""
        raise NotImplementedError(f"{type(self).__name__} is trained by gradient steps")

    def item_embeddings(self) -> torch.Tensor:
        """Item vectors for item-to-item similarity, shape [n_items, d]."""
        raise NotImplementedError

    def retrieval_users(self, users: torch.Tensor) -> torch.Tensor:
        """Query vectors of `users` whose dot product with `retrieval_items()` is the score's
        dot-product part (two-stage retrieval, `recsys.packaging.ann`); NotImplementedError
        for nets without one (MLP, EASE, popularity), which are always scored exactly."""
        raise NotImplementedError(f"{type(self).__name__} has no dot-product part to index")

    def retrieval_items(self) -> torch.Tensor:
        """Item vectors for the ANN index, shape [n_items, d] (see `retrieval_users`)."""
        raise NotImplementedError(f"{type(self).__name__} has no dot-product part to index")

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


def group_rows(table: nn.Embedding, items: torch.Tensor) -> torch.Tensor:
    """`rows` for a [P, M] index: [P, M, d]."""
    return rows(table, items.reshape(-1)).view(*items.shape, -1)


def sq_norms(*rows: torch.Tensor) -> torch.Tensor:
    """Squared L2 norm of each embedding row (last axis), summed over the given tables."""
    return sum(r.pow(2).sum(-1) for r in rows)  # type: ignore[return-value]
