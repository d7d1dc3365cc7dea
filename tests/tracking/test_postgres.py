"""recsys-train's MLflow run on a real PostgreSQL store (a throwaway server, see conftest)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from recsys.tracking.mlflow import REGISTERED_MODEL
from tests.tracking.checks import check_recommendations, check_run, only_run, registered_version
from tests.tracking.conftest import isolated_mlflow, train_tracked

pytestmark = pytest.mark.slow


def test_run_and_registered_model_on_postgres(tmp_path, tiny_processed, postgres_uri):
    with isolated_mlflow(tmp_path, postgres_uri):
        metrics, _ = train_tracked(tmp_path, postgres_uri, tiny_processed, "model=gmf")
        client = MlflowClient(postgres_uri)
        run = only_run(client)
        check_run(client, run, tiny_processed, metrics, "GMF", epochs=2)
        version = registered_version(client, run.info.run_id)
        check_recommendations(f"models:/{REGISTERED_MODEL}/{version}", tiny_processed)
