"""The registered `recsys` model as MLflow "model from code": MLflow runs this file to load it.

Its one artifact, `bundle`, is the recsys model artifact (`recsys.packaging.bundle`), and it
answers through `recsys.packaging.recommend`, like the BentoML service. Nothing is pickled:
the net is rebuilt from its spec and weights loaded with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

from recsys.packaging.bundle import MLFLOW_ARTIFACT, load_bundle
from recsys.packaging.recommend import DEFAULT_K, recommend

COLUMNS = ["user_id", "rank", "item_id", "score"]


class RecsysModel(mlflow.pyfunc.PythonModel):
    """Top-k unseen items per `user_id`; users unknown to the model get the most popular items."""

    def load_context(self, context: Any) -> None:
        self.bundle = load_bundle(context.artifacts[MLFLOW_ARTIFACT])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        k = int((params or {}).get("k", DEFAULT_K))
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        user_ids = model_input["user_id"].astype(str).tolist()
        rows = [
            (user, rank, item, score)
            for user, answer in zip(user_ids, recommend(self.bundle, user_ids, k), strict=True)
            for rank, (item, score) in enumerate(zip(answer.items, answer.scores, strict=True), 1)
        ]
        frame = pd.DataFrame(rows, columns=COLUMNS)
        return frame.astype({"rank": "int64", "score": "float32"})


mlflow.models.set_model(RecsysModel())
