"""Masked top-k over the full catalogue, in item chunks.

The one implementation behind validation, `recsys-eval` and serving: scores users against
item chunks, masks each user's seen items, and merges a running top-k, so memory is bounded
by users x chunk, never users x catalogue.
"""

from __future__ import annotations

import functools
import inspect

import torch

from recsys.models.base import RecommenderNet

# Score entries materialised per chunk (float32: 128 MiB, one buffer reused across chunks):
# fewer, wider chunks mean fewer top-k merges (MF, 1024 users x 100k items on 2 cores:
# 2,600 users/s against 2,450 at half the size and 1,400 at 4k items a chunk).
SCORE_BUDGET = 32 * 1024 * 1024


@torch.no_grad()
def masked_topk(
    net: RecommenderNet,
    users: torch.Tensor,
    seen_rows: torch.Tensor,
    seen_items: torch.Tensor,
    k: int,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (scores, items) per user among items not seen; seen slots come back as -inf.

    A user with fewer than k unseen items gets -inf entries at the end: callers drop them.
    """
    n_items = net.n_items
    k = min(k, n_items)
    if chunk is None:
        chunk = max(k, SCORE_BUDGET // max(1, users.numel()))
    best_scores = best_items = None
    n_users = users.numel()
    buffer = torch.empty(n_users * min(chunk, n_items), device=users.device)
    # Nets written before `out` existed don't take it; under autocast (bf16 validation) the
    # net computes in its own dtype, which out= would refuse.
    in_place = _takes_out(type(net)) and not torch.is_autocast_enabled(users.device.type)
    for start in range(0, n_items, chunk):
        stop = min(n_items, start + chunk)
        out = buffer[: n_users * (stop - start)].view(n_users, stop - start)
        if in_place:
            scores = net.score_items(users, start, stop, out=out)
        else:
            scores = net.score_items(users, start, stop)
        if scores.data_ptr() != out.data_ptr():  # not written in place (or a view of weights)
            scores = out.copy_(scores)
        in_chunk = (seen_items >= start) & (seen_items < stop)
        scores[seen_rows[in_chunk], seen_items[in_chunk] - start] = -torch.inf
        top_scores, top_idx = torch.topk(scores, min(k, stop - start), dim=1)
        top_items = top_idx + start
        if best_scores is not None:
            top_scores = torch.cat([best_scores, top_scores], dim=1)
            top_items = torch.cat([best_items, top_items], dim=1)
            top_scores, pick = torch.topk(top_scores, min(k, top_scores.shape[1]), dim=1)
            top_items = torch.gather(top_items, 1, pick)
        best_scores, best_items = top_scores, top_items
    assert best_scores is not None and best_items is not None
    return best_scores, best_items


@functools.cache
def _takes_out(net_class: type) -> bool:
    return "out" in inspect.signature(net_class.score_items).parameters
