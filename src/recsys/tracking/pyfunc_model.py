"""The registered `recsys` model as MLflow "model from code": MLflow runs this file to load it.

Nothing here is pickled: the net is rebuilt from its spec and weights loaded with
`torch.load(weights_only=True)`, so any batch size works and loading runs no stored code.
Artifacts (written by `recsys.tracking.mlflow`): `weights` (net spec + state dict),
`users`/`items` (id maps of the processed directory), `interactions` (known items, popularity).
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import torch

from recsys.evaluation.ranking import csr_rows, masked_topk
from recsys.models.checkpoint import load_net

DEFAULT_K = 10  # also the default of `k` in the signature's params schema


class RecsysModel(mlflow.pyfunc.PythonModel):
    """Top-k unseen items per `user_id`; users unknown to the model get the most popular items."""

    def load_context(self, context: Any) -> None:
        self.net, _ = load_net(context.artifacts["weights"])
        known = torch.load(context.artifacts["interactions"], weights_only=True)
        self.known_indptr, self.known_items = known["indptr"], known["indices"]
        # A user without interactions kept an untrained embedding: treat them as unknown.
        has_history = (self.known_indptr[1:] > self.known_indptr[:-1]).tolist()
        users = pl.read_parquet(context.artifacts["users"])
        self.user_index = {
            user_id: idx
            for user_id, idx in zip(users["user_id"], users["user_idx"], strict=True)
            if has_history[idx]
        }
        items = pl.read_parquet(context.artifacts["items"]).sort("item_idx")
        self.item_ids = items["item_id"].to_numpy()
        popularity = known["popularity"].float()
        self.popular = torch.argsort(popularity, descending=True, stable=True)
        self.popular_scores = popularity[self.popular]

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        k = int((params or {}).get("k", DEFAULT_K))
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        user_ids = model_input["user_id"].astype(str).to_numpy()
        index = np.array([self.user_index.get(u, -1) for u in user_ids], dtype=np.int64)
        k = min(k, self.net.n_items)
        scores = np.full((len(user_ids), k), -np.inf, dtype=np.float32)
        items = np.zeros((len(user_ids), k), dtype=np.int64)
        known = index >= 0
        if known.any():
            users = torch.from_numpy(index[known])
            seen_rows, seen_items = csr_rows(self.known_indptr, self.known_items, users)
            with torch.inference_mode():
                top_scores, top_items = masked_topk(self.net, users, seen_rows, seen_items, k)
            scores[known], items[known] = top_scores.numpy(), top_items.numpy()
        # Cold users have no history to score against: fall back to train popularity.
        scores[~known] = self.popular_scores[:k].numpy()
        items[~known] = self.popular[:k].numpy()
        valid = scores > -np.inf  # a user who has seen nearly everything gets fewer than k
        rows, ranks = np.nonzero(valid)
        return pd.DataFrame(
            {
                "user_id": user_ids[rows],
                "rank": ranks.astype(np.int64) + 1,
                "item_id": self.item_ids[items[valid]],
                "score": scores[valid],
            }
        )


mlflow.models.set_model(RecsysModel())
