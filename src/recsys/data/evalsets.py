"""Who is evaluated and against what: each user's seen items (masked) and relevant items (hits).

Both are CSR over all users, so any batch of users gathers its rows with a few tensor ops.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import IterableDataset

from recsys.data.processed import ProcessedData
from recsys.sparse import build_csr, csr_rows


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

    @classmethod
    def for_split(
        cls, data: ProcessedData, split: str, max_users: int | None = None, seed: int = 0
    ) -> EvalSet:
        """The users of `split` ("val" or "test") against their items there, with the splits
        before it masked (val: train; test: train + val), as the evaluation protocol says."""
        order = ("train", "val", "test")
        if split not in order[1:]:
            raise ValueError(f"split must be 'val' or 'test', got {split!r}")
        before = [getattr(data, name) for name in order[: order.index(split)]]
        target = getattr(data, split)
        return cls.build(
            [(s.users, s.items) for s in before],
            (target.users, target.items),
            data.n_users,
            max_users=max_users,
            seed=seed,
        )

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
