"""Who is evaluated and against what: each user's seen items (masked) and relevant items (hits).

Both are CSR over all users, so any batch of users gathers its rows with a few tensor ops.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import IterableDataset

from recsys.data.processed import ProcessedData
from recsys.evaluation.ranking import csr_rows


def build_csr(
    users: torch.Tensor, items: torch.Tensor, n_users: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(indptr, indices) with each row's items sorted."""
    order = torch.argsort(users * (int(items.max()) + 1 if items.numel() else 1) + items)
    counts = torch.bincount(users, minlength=n_users)
    indptr = torch.zeros(n_users + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(counts, 0)
    return indptr, items[order].long()


def known_interactions(data: ProcessedData) -> dict[str, torch.Tensor]:
    """Each user's items over all splits (CSR: what a served model must not recommend again)
    and the train popularity per item (the cold-start fallback)."""
    splits = (data.train, data.val, data.test)
    users = torch.cat([s.users for s in splits])
    items = torch.cat([s.items for s in splits])
    indptr, indices = build_csr(users, items, data.n_users)
    popularity = torch.bincount(data.train.items, minlength=data.n_items)
    return {"indptr": indptr, "indices": indices, "popularity": popularity}


@dataclass(frozen=True)
class EvalSet:
    """Users with at least one relevant item, plus seen and relevant CSR over all users."""

    users: torch.Tensor
    seen_indptr: torch.Tensor
    seen_indices: torch.Tensor
    rel_indptr: torch.Tensor
    rel_indices: torch.Tensor

    @classmethod
    def build(
        cls,
        seen: list[tuple[torch.Tensor, torch.Tensor]],
        relevant: tuple[torch.Tensor, torch.Tensor],
        n_users: int,
        max_users: int | None = None,
        seed: int = 0,
    ) -> EvalSet:
        """`seen`: the (users, items) splits to mask; `max_users`: a fixed random user sample."""
        seen_users = torch.cat([u for u, _ in seen]) if seen else torch.empty(0, dtype=torch.long)
        seen_items = torch.cat([i for _, i in seen]) if seen else torch.empty(0, dtype=torch.long)
        seen_ptr, seen_idx = build_csr(seen_users, seen_items, n_users)
        rel_ptr, rel_idx = build_csr(relevant[0], relevant[1], n_users)
        users = torch.nonzero(rel_ptr[1:] > rel_ptr[:-1]).squeeze(1)
        if max_users is not None and users.numel() > max_users:
            g = torch.Generator().manual_seed(seed)
            users = torch.sort(users[torch.randperm(users.numel(), generator=g)[:max_users]]).values
        return cls(users, seen_ptr, seen_idx, rel_ptr, rel_idx)

    def batch(self, users: torch.Tensor) -> dict[str, torch.Tensor]:
        seen_rows, seen_items = csr_rows(self.seen_indptr, self.seen_indices, users)
        rel_rows, rel_items = csr_rows(self.rel_indptr, self.rel_indices, users)
        n_relevant = self.rel_indptr[users + 1] - self.rel_indptr[users]
        return {
            "users": users,
            "seen_rows": seen_rows,
            "seen_items": seen_items,
            "rel_rows": rel_rows,
            "rel_items": rel_items,
            "n_relevant": n_relevant,
        }


class EvalBatches(IterableDataset):
    """This rank's users (a strided shard: disjoint, no padding, nobody counted twice)."""

    def __init__(self, evalset: EvalSet, batch_size: int, rank: int = 0, world_size: int = 1):
        self.evalset = evalset
        self.batch_size = batch_size
        self.users = evalset.users[rank::world_size]

    def __len__(self) -> int:
        return -(-self.users.numel() // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for lo in range(0, self.users.numel(), self.batch_size):
            yield self.evalset.batch(self.users[lo : lo + self.batch_size])
