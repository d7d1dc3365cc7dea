"""Budgeted tuning: the pruning callback against a real training loop, and the whole Optuna
search through the real `recsys-train -m hparams_search=...` with an MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import time

import mlflow
import pytest
import yaml

from recsys.training.run import train
from recsys.training.tuning import ActiveTrial, set_active_trial
from tests.conftest import BIN
from tests.training.compose import train_config


class ScriptedTrial:
    """Stands in for an optuna Trial: records reports, prunes from a given epoch on."""

    def __init__(self, prune_from: int | None = None) -> None:
        self.reports: list[tuple[int, float]] = []
        self.prune_from = prune_from

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.prune_from is not None and self.reports[-1][0] >= self.prune_from


PRUNING = "+callbacks.optuna_pruning._target_=recsys.training.callbacks.OptunaPruning"
MONITOR = "+callbacks.optuna_pruning.monitor=val/ndcg@10"


def _train_in_trial(processed, tmp_path, current: ActiveTrial, epochs: int = 5):
    cfg = train_config(
        processed,
        tmp_path,
        "model=mf",
        f"trainer.max_epochs={epochs}",
        PRUNING,
        MONITOR,
        "test=false",
    )
    set_active_trial(current)
    try:
        return train(cfg)
    finally:
        set_active_trial(None)


def test_a_trial_reports_every_epoch_and_stops_when_pruned(tiny_processed, tmp_path):
    trial = ScriptedTrial(prune_from=1)
    current = ActiveTrial(trial)
    _, objects = _train_in_trial(tiny_processed, tmp_path, current)
    assert [step for step, _ in trial.reports] == [0, 1]  # stopped after epoch 1 of 5
    assert current.pruned and not current.out_of_budget
    assert objects["trainer"].current_epoch == 2
    assert all(0 <= value <= 1 for _, value in trial.reports)


def test_a_trial_stops_when_the_budget_is_spent(tiny_processed, tmp_path):
    current = ActiveTrial(ScriptedTrial(), deadline=time.monotonic() - 1)
    metrics, objects = _train_in_trial(tiny_processed, tmp_path, current)
    assert current.out_of_budget and not current.pruned
    assert objects["trainer"].current_epoch == 1
    assert "val/ndcg@10" in metrics and not any(k.startswith("test/") for k in metrics)


def test_outside_a_search_the_callback_does_nothing(tiny_processed, tmp_path):
    _, objects = _train_in_trial(tiny_processed, tmp_path, None, epochs=3)
    assert objects["trainer"].current_epoch == 3


@pytest.mark.slow
def test_budgeted_search_registers_only_the_tested_best_trial(tiny_processed, in_tmp):
    """A search with far more trials than its budget allows stops on time, selects on val,
    tests only the best trial and registers it, tagged, in its own MLflow run."""
    store = f"sqlite:///{in_tmp / 'mlflow.db'}"
    budget = 40
    started = time.monotonic()
    res = subprocess.run(
        [
            BIN / "recsys-train", "-m", "hparams_search=mf_optuna",
            f"data.processed_dir={tiny_processed}", f"hydra.sweeper.timeout={budget}",
            "hydra.sweeper.n_trials=200", "trainer.max_epochs=6",
            f"hydra.sweep.dir={in_tmp / 'sweep'}", "trainer.enable_progress_bar=false",
        ],
        cwd=in_tmp, capture_output=True, text=True, timeout=600,
        env={**os.environ, "MLFLOW_TRACKING_URI": store, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert res.returncode == 0, res.stderr[-3000:]
    results = yaml.safe_load((in_tmp / "sweep" / "optimization_results.yaml").read_text())
    n_trials = sum(results["trials"].values())
    assert 2 <= n_trials < 200 and results["seconds"] <= budget + 30
    assert elapsed < budget + 120  # start-up, the last epoch and the final test job
    first = yaml.safe_load((in_tmp / "sweep" / "0" / ".hydra" / "overrides.yaml").read_text())
    assert {"model.loss=softmax", "data.num_negatives=16", "model.net.embedding_dim=64"} <= set(
        first
    )  # trial 0 runs the shipped defaults
    best_dir = results["best_output_dir"]
    final = json.loads((in_tmp / "sweep" / str(n_trials) / "metrics.json").read_text())
    assert final["val/ndcg@10"] == pytest.approx(results["best_value"], abs=1e-6)
    assert "test/ndcg@10" in final
    trial_metrics = json.loads(
        (in_tmp / "sweep" / os.path.basename(best_dir) / "metrics.json").read_text()
    )
    assert not any(k.startswith("test/") for k in trial_metrics)  # trials never see test

    client = mlflow.MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("recsys").experiment_id])
    tested = [r for r in runs if "test/ndcg10" in r.data.metrics]
    assert len(runs) == n_trials and len(tested) == 1
    assert "best_trial" in tested[0].data.tags["tags"]
    versions = client.search_model_versions("name='recsys'")
    assert [v.run_id for v in versions] == [tested[0].info.run_id]


def test_the_search_keeps_the_best_trials_duration_for_the_final_refit():
    """No trial starts (and the running one stops) once the budget less the best trial's own
    duration has passed: the final job refits that trial within the same budget."""
    from hydra_plugins.recsys_optuna_sweeper.recsys_optuna_sweeper import search_deadline

    assert search_deadline(100.0, None, 50.0) is None
    assert search_deadline(100.0, 600, 0.0) == 700.0
    assert search_deadline(100.0, 600, 150.0) == 550.0
    assert search_deadline(100.0, 600, 900.0) == 100.0  # a best trial longer than the budget
