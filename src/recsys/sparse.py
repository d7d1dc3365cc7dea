"""Per-user item lists as compressed sparse rows (CSR): built once, gathered for any batch of
users with a few tensor ops. Shared by the eval sets (`data/`), ranking (`evaluation/`) and
the bundle (`packaging/`), so none of them imports another for it."""

from __future__ import annotations

import torch


def build_csr(
    users: torch.Tensor, items: torch.Tensor, n_users: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(indptr, indices) with each row's items sorted."""
    order = torch.argsort(users * (int(items.max()) + 1 if items.numel() else 1) + items)
    counts = torch.bincount(users, minlength=n_users)
    indptr = torch.zeros(n_users + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(counts, 0)
    return indptr, items[order].long()


def csr_rows(
    indptr: torch.Tensor, indices: torch.Tensor, users: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row in batch, column) pairs of the CSR rows `users`, vectorized."""
    if users.numel() == 1:  # one user (a served request): a slice, not six tensor ops
        user = int(users[0])
        cols = indices[int(indptr[user]) : int(indptr[user + 1])]
        return cols.new_zeros(cols.shape), cols
    starts = indptr[users]
    lengths = indptr[users + 1] - starts
    rows = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), lengths)
    first = torch.repeat_interleave(starts - (torch.cumsum(lengths, 0) - lengths), lengths)
    cols = indices[first + torch.arange(rows.numel(), device=users.device)]
    return rows, cols
