"""recsys-train's MLflow run on a real SQLite store: contents, registered model, partial runs."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from recsys.errors import RecsysError
from recsys.packaging.bundle import load_bundle
from recsys.tracking.mlflow import REGISTERED_MODEL, resume_run_id
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
