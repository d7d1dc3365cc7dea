"""Sparse train histories for the nets fitted by solvers (EASE, iALS) instead of gradients.

Hand-written over index tensors: torch's sparse CSR covers matmul but not "the dense rows
of these users", and both nets need exactly that on CPU and GPU alike.
"""

from __future__ import annotations

import torch


def history_csr(
    users: torch.Tensor, items: torch.Tensor, n_users: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(indptr [n_users + 1], indices [nnz]) of the distinct (user, item) pairs, items sorted
    within each user."""
    users, items = users.long(), items.long()
    n_items = int(items.max()) + 1 if items.numel() else 1
    keys = torch.unique(users * n_items + items)  # sorted: by user, then item
    rows = keys // n_items
    indptr = torch.zeros(n_users + 1, dtype=torch.long, device=users.device)
    indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n_users), 0)
    return indptr, keys % n_items


def history_positions(indptr: torch.Tensor, users: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """For a batch of users: (row in the batch, position in `indices`) of every history entry."""
    starts, lengths = indptr[users], indptr[users + 1] - indptr[users]
    row = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), lengths)
    first = torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
    pos = starts.repeat_interleave(lengths) + torch.arange(row.numel(), device=users.device) - first
    return row, pos


def history_rows(
    indptr: torch.Tensor, indices: torch.Tensor, users: torch.Tensor, n_items: int
) -> torch.Tensor:
    """The users' histories as dense 0/1 rows, shape [B, n_items]."""
    row, pos = history_positions(indptr, users)
    dense = torch.zeros(users.numel(), n_items, device=indices.device)
    dense[row, indices[pos]] = 1.0
    return dense
