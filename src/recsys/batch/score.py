"""One part of a batch job: its users' top-K as rows, through the one inference kernel
(`recsys.packaging.recommend.top_items`); users the model cannot personalise for get the
popular items, as the service gives them."""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from recsys.packaging.bundle import Bundle
from recsys.packaging.recommend import top_items

PART_SCHEMA = {"user_id": pl.String, "rank": pl.Int32, "item_id": pl.String, "score": pl.Float32}


def known_indices(bundle: Bundle, user_ids: pl.Series) -> np.ndarray:
    """user_idx of each id, -1 for ids without history in the model (answered as cold)."""
    index = bundle.user_index
    return np.fromiter((index.get(u, -1) for u in user_ids.to_list()), np.int64, user_ids.len())


def score_users(
    bundle: Bundle,
    user_ids: pl.Series,
    k: int,
    exclude_seen: bool,
    batch_users: int,
    item_ids: pl.Series,
) -> pl.DataFrame:
    """Rows (user_id, rank, item_id, score) for `user_ids` in their order, each user's block
    ranked 1..k; a user with fewer than k unseen items gets a shorter block."""
    n = user_ids.len()
    k = min(k, bundle.net.n_items)
    user_idx = known_indices(bundle, user_ids)
    scores = np.empty((n, k), dtype=np.float32)
    items = np.empty((n, k), dtype=np.int64)
    known = np.flatnonzero(user_idx >= 0)
    for start in range(0, known.size, batch_users):
        rows = known[start : start + batch_users]
        users = torch.from_numpy(user_idx[rows]).to(bundle.device)
        top_scores, top = top_items(bundle, users, k, exclude_seen)
        scores[rows], items[rows] = top_scores.cpu().numpy(), top.cpu().numpy()
    cold = np.flatnonzero(user_idx < 0)
    if cold.size:
        scores[cold] = bundle.popular_counts[:k].numpy()
        items[cold] = bundle.popular_items[:k].numpy()
    keep = (scores != -np.inf).ravel()  # the padding of users who have seen nearly everything
    user_pos = np.repeat(np.arange(n), k)[keep]
    return pl.DataFrame(
        {
            "user_id": user_ids.gather(user_pos),
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), n)[keep],
            "item_id": item_ids.gather(items.ravel()[keep]),
            "score": scores.ravel()[keep],
        },
        schema=PART_SCHEMA,
    )
