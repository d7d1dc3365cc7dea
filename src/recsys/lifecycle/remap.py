"""A bundle's net scored in another processed directory's id space, so two models trained on
different data can be ranked on one common test split.

Indices are per processed directory: the same user or item has another index (or none) in a
model trained on other data. Users the model does not know are answered as the service
answers them, with its popular items; items it does not know are never recommended.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
import torch

from recsys.models.base import RecommenderNet
from recsys.packaging.bundle import Bundle


def bundle_popularity(bundle: Bundle) -> torch.Tensor:
    """Train interactions per item, by item index (the bundle stores them ranked)."""
    popularity = torch.zeros(bundle.net.n_items)
    popularity[bundle.popular_items] = bundle.popular_counts.float()
    return popularity


def index_map(ids: Sequence[str], index: dict[str, int]) -> torch.Tensor:
    """For each id (in the target's index order) its index in the model, -1 when unknown."""
    return torch.tensor([index.get(i, -1) for i in ids], dtype=torch.long)


class RemappedNet(RecommenderNet):
    """`net` seen through id maps: user u of the target is the net's user_map[u] (-1:
    unknown, ranked by `popularity`, the net's train interactions per item), item i is the
    net's item_map[i] (-1: never recommended)."""

    def __init__(
        self,
        net: RecommenderNet,
        popularity: torch.Tensor,
        user_map: torch.Tensor,
        item_map: torch.Tensor,
    ) -> None:
        super().__init__(user_map.numel(), item_map.numel())
        self.inner = net
        self.register_buffer("user_map", user_map, persistent=False)
        self.register_buffer("item_map", item_map, persistent=False)
        self.register_buffer("popularity", popularity.float(), persistent=False)

    def score_items(
        self, users: torch.Tensor, start: int = 0, stop: int | None = None, out=None
    ) -> torch.Tensor:
        """Scores against target items start..stop-1. Processed directories index ids in
        lexicographic order, so a chunk's items map to a narrow range of the net's: only that
        range is scored (exact whatever the order, just wider when ids interleave)."""
        stop = self.n_items if stop is None else stop
        items = self.item_map[start:stop]
        mapped = items >= 0
        inner_users = self.user_map[users]
        known = inner_users >= 0
        scores = self.popularity[items.clamp(min=0)].expand(users.numel(), -1).clone()
        if known.any() and mapped.any():
            lo, hi = int(items[mapped].min()), int(items[mapped].max()) + 1
            inner = self.inner.score_items(inner_users[known], lo, hi).float()
            scores[known] = inner[:, (items - lo).clamp(0, hi - lo - 1)]
        scores[:, ~mapped] = -torch.inf
        return scores


def same_ids(processed_dir: str | Path, bundle_dir: str | Path) -> bool:
    """Whether the bundle's user and item ids are the processed directory's, index for index
    (then the net is scored as it is)."""
    for kind in ("user", "item"):
        target = pl.read_parquet(Path(processed_dir, f"{kind}s.parquet")).sort(f"{kind}_idx")
        model = pl.read_parquet(Path(bundle_dir, f"{kind}s.parquet"))[f"{kind}_id"]
        if not target[f"{kind}_id"].equals(model):
            return False
    return True
