"""recsys-train's MLflow run on a real SQLite store: contents, registered model, partial runs."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from recsys.data.evalsets import EvalSet
from recsys.data.processed import load_processed
from recsys.errors import RecsysError
from recsys.evaluation.protocols import evaluate_full
from recsys.evaluation.segments import run_metrics, segment_report
from recsys.models.checkpoint import load_net
from recsys.packaging.bundle import load_bundle
from recsys.tracking.mlflow import REGISTERED_MODEL, metric_key, resume_run_id
from tests.tracking.checks import (
    artifact_paths,
    check_recommendations,
    check_run,
    only_run,
    registered_version,
)
from tests.tracking.conftest import isolated_mlflow, train_tracked


@pytest.fixture(scope="module")
def sqlite_run(tmp_path_factory, tiny_processed):
    """One 2-epoch MF run tracked in a fresh SQLite store, shared by this module's tests."""
    workdir = tmp_path_factory.mktemp("sqlite_run")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    with isolated_mlflow(workdir, uri):
        metrics, objects = train_tracked(workdir, uri, tiny_processed)
        client = MlflowClient(uri)
        yield SimpleNamespace(
            client=client, run=only_run(client), metrics=metrics, best=objects["best"]
        )


def test_run_holds_params_history_metrics_tags_and_artifacts(sqlite_run, tiny_processed):
    check_run(sqlite_run.client, sqlite_run.run, tiny_processed, sqlite_run.metrics, "MF", epochs=2)


def test_run_logs_segments_over_every_test_user(sqlite_run, tiny_processed):
    """segments.json as an artifact and as run metrics, equal to a fresh evaluation of the
    best checkpoint over every test user; the activity buckets add up to the test metrics."""
    run_id, logged = sqlite_run.run.info.run_id, sqlite_run.run.data.metrics
    report = mlflow.artifacts.load_dict(f"runs:/{run_id}/segments.json")
    flat = run_metrics(report)
    assert {metric_key(name) for name in flat} <= set(logged)
    for name in (
        "test/segment/user_activity/low/ndcg10",
        "test/segment/item_popularity/tail/recall20",
        "test/segment/new_items/recommended_share10",
        "test/gini10",
        "test/coverage20",
    ):
        assert name in logged, name
    data = load_processed(tiny_processed)
    net, _ = load_net(sqlite_run.best)
    everyone = EvalSet.for_split(data, "test")
    _, ranked = evaluate_full(net, everyone, report["k"])
    fresh = run_metrics(segment_report(ranked, everyone, data, report["k"]))
    assert {metric_key(name): value for name, value in fresh.items()} == pytest.approx(
        {metric_key(name): logged[metric_key(name)] for name in flat}
    )
    buckets = report["user_activity"]["buckets"]
    assert sum(b["n_users"] for b in buckets) == everyone.users.numel()
    for key in ("test/ndcg@10", "test/recall@20"):
        overall = sum(b["n_users"] * b[key] for b in buckets if b["n_users"])
        assert overall / everyone.users.numel() == pytest.approx(sqlite_run.metrics[key], abs=1e-6)


def test_registered_model_recommends_unseen_items(sqlite_run, tiny_processed):
    version = registered_version(sqlite_run.client, sqlite_run.run.info.run_id)
    check_recommendations(f"models:/{REGISTERED_MODEL}/{version}", tiny_processed)


def test_registered_model_carries_the_bundle_recsys_package_copies(sqlite_run):
    """One artifact: the registered version holds the bundle, loadable without pickled code."""
    version = registered_version(sqlite_run.client, sqlite_run.run.info.run_id)
    model_dir = mlflow.artifacts.download_artifacts(f"models:/{REGISTERED_MODEL}/{version}")
    bundle = load_bundle(f"{model_dir}/artifacts/bundle")
    assert bundle.info["mlflow_run_id"] == sqlite_run.run.info.run_id
    assert bundle.info["metrics"] == {
        key: value for key, value in sqlite_run.metrics.items() if key.startswith("test/")
    }
    weights = torch.load(f"{model_dir}/artifacts/bundle/weights.pt", weights_only=True)
    assert set(weights) == set(bundle.net.state_dict())


def test_checkpoint_names_its_run_for_resuming(sqlite_run, tmp_path):
    assert resume_run_id(sqlite_run.best) == sqlite_run.run.info.run_id
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(RecsysError, match="not a readable torch checkpoint"):
        resume_run_id(tmp_path / "junk.ckpt")


def test_run_without_checkpoint_logs_what_exists_and_registers_nothing(
    tmp_path, tiny_processed, caplog
):
    """No best checkpoint, nothing to register: the run still ends FINISHED with its artifacts."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    no_checkpoint = ("callbacks.model_checkpoint=null", "+trainer.enable_checkpointing=false")
    with isolated_mlflow(tmp_path, uri), caplog.at_level(logging.WARNING):
        metrics, objects = train_tracked(tmp_path, uri, tiny_processed, *no_checkpoint)
        client = MlflowClient(uri)
        run = only_run(client)
        assert objects["best"] is None
        assert run.info.status == "FINISHED"
        assert run.data.tags["model"] == "MF"
        assert "best_checkpoint" not in run.data.tags
        assert run.data.metrics["test/ndcg10"] == metrics["test/ndcg@10"]
        assert {"config.yaml", "metadata.json", "metrics.json"} <= artifact_paths(
            client, run.info.run_id
        )
        assert client.search_registered_models() == []
    assert "not registered" in caplog.text
