"""`recsys-train ... logger=mlflow` through the real console script, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from recsys.tracking.mlflow import REGISTERED_MODEL
from tests.conftest import BIN
from tests.tracking.checks import check_run, known_items, only_run, registered_version
from tests.tracking.conftest import isolated_mlflow

pytestmark = pytest.mark.slow

# Loads the registered model as a serving process would: a fresh interpreter, another directory.
PREDICT = """
import sys, mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
out = model.predict(pd.DataFrame({"user_id": sys.argv[2:]}), params={"k": 5})
print(out.to_json(orient="records"))
"""


def test_cli_run_is_tracked_and_its_model_loads_in_a_fresh_process(tmp_path, tiny_processed):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    env.pop("PROJECT_ROOT", None)  # it would move logs/ out of tmp_path
    result = subprocess.run(
        [
            BIN / "recsys-train",
            f"data.processed_dir={tiny_processed}",
            "trainer.max_epochs=2",
            "callbacks=checkpoint_only",
            "hydra.run.dir=run",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert float(result.stdout.splitlines()[-1]) == pytest.approx(metrics["val/ndcg@10"], abs=1e-6)

    with isolated_mlflow(tmp_path, uri):
        client = MlflowClient(uri)
        run = only_run(client)
        check_run(client, run, tiny_processed, metrics, "NeuMF", epochs=2)
        version = registered_version(client, run.info.run_id)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    known = known_items(tiny_processed)
    users = sorted(known)[:2]
    loaded = subprocess.run(
        [sys.executable, "-c", PREDICT, f"models:/{REGISTERED_MODEL}/{version}", *users, "nobody"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert loaded.returncode == 0, loaded.stderr
    records = json.loads(loaded.stdout.splitlines()[-1])
    assert [r["user_id"] for r in records] == [u for u in [*users, "nobody"] for _ in range(5)]
    for record in records:
        assert record["item_id"] not in known.get(record["user_id"], set())
