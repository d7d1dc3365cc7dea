"""One model, one inference path: the registered MLflow pyfunc, the BentoML service and
`recsys-eval`'s topk.parquet give the same recommendations for the same users.

topk.parquet masks what was seen before the test split (train + val); the service and the
pyfunc mask every item the user has (test included). So a user's served list is their
topk.parquet list without their test items, with the same scores."""

from __future__ import annotations

import subprocess

import mlflow
import pandas as pd
import polars as pl
import pytest

from tests.conftest import BIN
from tests.tracking.conftest import isolated_mlflow

pytestmark = pytest.mark.slow
K = 20


@pytest.fixture(scope="module")
def topk(trained, tmp_path_factory) -> pl.DataFrame:
    """recsys-eval's topk.parquet of the trained checkpoint, with external ids."""
    out = tmp_path_factory.mktemp("eval")
    result = subprocess.run(
        [BIN / "recsys-eval", f"ckpt_path={trained.ckpt}",
         f"data.processed_dir={trained.processed}", f"eval.output_dir={out}", f"eval.k=[{K}]",
         "eval.bootstrap=0"],
        cwd=out, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    users = pl.read_parquet(trained.processed / "users.parquet")
    items = pl.read_parquet(trained.processed / "items.parquet")
    return (
        pl.read_parquet(out / "topk.parquet")
        .join(users, on="user_idx")
        .join(items, on="item_idx")
        .sort("user_idx", "rank")
    )


def test_pyfunc_service_and_eval_topk_agree(trained, client, topk):
    processed = trained.processed
    test_items = (
        pl.read_parquet(processed / "test.parquet")
        .join(pl.read_parquet(processed / "users.parquet"), on="user_idx")
        .join(pl.read_parquet(processed / "items.parquet"), on="item_idx")
        .group_by("user_id")
        .agg("item_id")
    )
    held_out = {user: set(items) for user, items in test_items.iter_rows()}
    users = topk["user_id"].unique(maintain_order=True).to_list()[:25]
    with isolated_mlflow(trained.workdir, trained.tracking_uri):
        pyfunc = mlflow.pyfunc.load_model("models:/recsys/1")
    served = pyfunc.predict(pd.DataFrame({"user_id": users}), params={"k": K})
    compared = 0
    for user in users:
        evaluated = topk.filter(pl.col("user_id") == user)
        expected = [i for i in evaluated["item_id"] if i not in held_out[user]]
        answer = client.post("/recommend", json={"user_id": user, "k": K}).json()
        from_service = [item["item_id"] for item in answer["items"]]
        from_pyfunc = served.loc[served["user_id"] == user, "item_id"].tolist()
        assert from_pyfunc == from_service, user
        # The evaluated list, minus the test items, is a prefix of the served one.
        assert from_service[: len(expected)] == expected, user
        scores = dict(zip(evaluated["item_id"], evaluated["score"], strict=True))
        for item in answer["items"][: len(expected)]:
            assert item["score"] == pytest.approx(scores[item["item_id"]], abs=1e-5)
        compared += len(expected)
    assert compared > 10 * len(users)  # mostly full lists were compared
