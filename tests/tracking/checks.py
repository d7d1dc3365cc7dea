"""What every tracked training run must contain, checked against a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import polars as pl
import yaml
from mlflow import MlflowClient
from mlflow.entities import Run

from recsys.tracking.mlflow import REGISTERED_MODEL, metric_key

PLOTS = {"plots/training_curves.png", "plots/test_ranking_at_k.png", "plots/popularity.png"}


def only_run(client: MlflowClient) -> Run:
    """The single recsys-train run of a fresh store."""
    experiment = client.get_experiment_by_name("recsys")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    return run


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    paths = set()
    for info in client.list_artifacts(run_id, path):
        paths |= artifact_paths(client, run_id, info.path) if info.is_dir else {info.path}
    return paths


def check_run(
    client: MlflowClient,
    run: Run,
    processed: Path,
    metrics: dict[str, Any],
    model: str,
    epochs: int,
) -> None:
    """Status, params, per-epoch history, final metrics, tags and artifacts of one run."""
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["data/processed_dir"] == str(processed)
    assert params["model/net/_target_"] == f"recsys.models.{model}"
    assert params["optimized_metric"] == "val/ndcg@10"

    def history(name: str) -> list[Any]:
        return client.get_metric_history(run_id, metric_key(name))

    fit_steps = {m.step for m in history("val/ndcg@10_best")}
    assert len(fit_steps) == epochs
    assert len([m for m in history("val/ndcg@10") if m.step in fit_steps]) == epochs
    if model != "Popularity":
        assert len(history("train/loss")) == epochs

    logged = run.data.metrics
    for name, value in metrics.items():
        assert logged[metric_key(name)] == float(value), name
    assert 0 < logged["test/coverage10"] <= 1
    assert 0 <= logged["test/avg_popularity_percentile10"] <= 100

    meta = json.loads((processed / "metadata.json").read_text())
    tags = run.data.tags
    assert tags["input_sha256"] == meta["input_sha256"]
    assert tags["processed_dir"] == str(processed.resolve())
    assert tags["model"] == model
    assert Path(tags["best_checkpoint"]).name == "best.ckpt"

    assert artifact_paths(client, run_id) == {
        "config.yaml",
        "metadata.json",
        "metrics.json",
        "segments.json",
        *PLOTS,
    }
    config = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml"))
    assert config["data"]["processed_dir"] == str(processed)
    assert "${" not in mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")  # resolved
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/metadata.json") == meta
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/metrics.json") == metrics
    for plot in PLOTS:
        local = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{plot}")
        assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def registered_version(client: MlflowClient, run_id: str) -> str:
    """The one `recsys` version this run registered, tagged with its run and data."""
    versions = client.search_model_versions(f"name='{REGISTERED_MODEL}' and run_id='{run_id}'")
    assert len(versions) == 1
    version = versions[0]
    assert version.tags["run_id"] == run_id
    assert run_id in version.description
    return version.version


def known_items(processed: Path) -> dict[str, set[str]]:
    """Every user's items over all splits, by external ids."""
    users = pl.read_parquet(processed / "users.parquet")
    items = pl.read_parquet(processed / "items.parquet")
    rows = pl.concat(
        pl.read_parquet(processed / f"{split}.parquet", columns=["user_idx", "item_idx"])
        for split in ("train", "val", "test")
    )
    pairs = rows.join(users, on="user_idx").join(items, on="item_idx")
    grouped = pairs.group_by("user_id").agg(pl.col("item_id"))
    return {user: set(its) for user, its in grouped.iter_rows()}


def check_recommendations(model_uri: str, processed: Path, k: int = 5) -> None:
    """The registered pyfunc: top-k unseen items for 1 and for 37 users, popular items for an
    unknown one."""
    model = mlflow.pyfunc.load_model(model_uri)
    known = known_items(processed)
    users = sorted(known)[:37]
    for batch in (users[:1], users):
        out = model.predict(pd.DataFrame({"user_id": batch}), params={"k": k})
        assert list(out.columns) == ["user_id", "rank", "item_id", "score"]
        assert len(out) == k * len(batch)
        for user, recs in out.groupby("user_id", sort=False):
            assert recs["rank"].tolist() == list(range(1, k + 1))
            assert recs["score"].is_monotonic_decreasing
            assert not set(recs["item_id"]) & known[user], user
        assert out["user_id"].drop_duplicates().tolist() == batch

    train = pl.read_parquet(processed / "train.parquet").join(
        pl.read_parquet(processed / "items.parquet"), on="item_idx"
    )
    counts = dict(train.group_by("item_id").len().iter_rows())
    out = model.predict(pd.DataFrame({"user_id": ["no-such-user"]}), params={"k": k})
    recommended = sorted(counts.get(item, 0) for item in out["item_id"])
    assert recommended == sorted(counts.values())[-k:]
