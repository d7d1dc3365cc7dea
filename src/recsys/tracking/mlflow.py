"""The end of a recsys-train MLflow run: tags, final metrics, artifacts, plots and the
registered model `recsys`.

Lightning's MLFlowLogger has already logged the params and the per-epoch metrics; this module
completes that same run from rank 0 and marks it FINISHED.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import torch
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from omegaconf import DictConfig, OmegaConf

from recsys.data.evalsets import EvalSet
from recsys.data.processed import ProcessedData
from recsys.errors import RecsysError
from recsys.evaluation.protocols import evaluate_full
from recsys.evaluation.segments import popularity_bias, run_metrics, segment_report
from recsys.models.base import RecommenderNet
from recsys.models.checkpoint import CheckpointError, read_checkpoint
from recsys.packaging.bundle import MLFLOW_ARTIFACT, BundleParts, write_bundle
from recsys.packaging.recommend import DEFAULT_K
from recsys.packaging.sources import from_checkpoint

log = logging.getLogger(__name__)

REGISTERED_MODEL = "recsys"
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
PLOT_KS = range(1, 51)
TOP_K = 10
# Test users behind the K-curves and popularity plots: a fixed sample keeps them to seconds
# on any dataset (the metrics, segments and coverage are over every test user).
PLOT_MAX_USERS = 2000

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "user_id")]),
    outputs=Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "rank"),
            ColSpec("string", "item_id"),
            ColSpec("float", "score"),
        ]
    ),
    params=ParamSchema([ParamSpec("k", "long", DEFAULT_K)]),
)
# What pyfunc_model.py imports, pinned to this environment. Listed rather than inferred:
# inference loads the model in a subprocess, which costs seconds per run.
MODEL_REQUIREMENTS = ("recsys", "mlflow", "torch", "numpy", "pandas", "polars")


def metric_key(name: str) -> str:
    """The name Lightning's MLFlowLogger gives a metric (MLflow forbids `@`, so it is dropped):
    final values land in the same series as the per-epoch ones."""
    return re.sub(r"[^a-zA-Z0-9_/. -]+", "", name)


def resume_run_id(ckpt_path: str | Path) -> str | None:
    """The MLflow run a checkpoint was trained in, so a resumed fit continues that run."""
    try:
        ckpt = read_checkpoint(ckpt_path)
    except CheckpointError as err:
        raise RecsysError(str(err), path=ckpt_path) from err
    return ckpt["recsys"].get("mlflow_run_id")


def log_new_params(logger: Any, params: dict[str, Any]) -> None:
    """Params the (resumed) run does not have yet; changed values become `resumed/...` tags."""
    from lightning.fabric.utilities.logger import _convert_params, _flatten_dict
    from mlflow.entities import Param, RunTag

    flat = _flatten_dict(_convert_params(params))
    existing = logger.experiment.get_run(logger.run_id).data.params
    new = [Param(k, str(v)[:6000]) for k, v in flat.items() if k not in existing]
    changed = [
        RunTag(f"resumed/{k}", str(v)[:5000])
        for k, v in flat.items()
        if k in existing and existing[k] != str(v)[:6000]
    ]
    for lo in range(0, max(len(new), len(changed)), 100):  # MLflow's batch limit
        logger.experiment.log_batch(
            logger.run_id, params=new[lo : lo + 100], tags=changed[lo : lo + 100]
        )


def finish_run(
    logger: Any,
    cfg: DictConfig,
    trainer: Any,
    datamodule: Any,
    metrics: dict[str, float | int],
    best: str | None,
) -> None:
    """Add tags, final metrics, artifacts, plots and the registered model to the logger's run.

    Without a best checkpoint (e.g. fast_dev_run) whatever exists is logged and nothing is
    registered.
    """
    mlflow.set_tracking_uri(logger._tracking_uri)
    mlflow.set_registry_uri(logger._tracking_uri)
    client, run_id = logger.experiment, logger.run_id
    data = datamodule.load()
    parts = from_checkpoint(best, str(data.path), data) if best else None
    if parts is not None:
        net = parts.net
    else:  # the weights in memory, moved off any accelerator without touching the trainer's
        net = copy.deepcopy(trainer.lightning_module.net).cpu().eval()
    with mlflow.start_run(run_id=run_id):
        tags = {
            "input_sha256": data.metadata.get("input_sha256"),
            "processed_dir": str(data.path.resolve()),
            "model": type(net).__name__,
            "best_checkpoint": str(Path(best).resolve()) if best else None,
            "tags": ",".join(map(str, cfg.get("tags") or [])) or None,
        }
        mlflow.set_tags({key: value for key, value in tags.items() if value is not None})
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config.yaml")
        mlflow.log_artifact(str(data.path / "metadata.json"))
        mlflow.log_dict(dict(sorted(metrics.items())), "metrics.json")
        curves = training_curves(client, run_id, str(cfg.optimized_metric))
        if curves is not None:
            mlflow.log_figure(curves, "plots/training_curves.png")
        final = dict(metrics)
        if any(key.startswith("test/") for key in metrics):  # respect runs with test=false
            final.update(log_test_report(net, data, trainer.lightning_module.ks))
        log_final_metrics(client, run_id, final, trainer.global_step)
        if not cfg.get("register", True):
            log.info("register=false: model not registered")
        elif parts is None:
            log.warning("no best checkpoint (e.g. fast_dev_run): model not registered")
        else:
            tested = {key: value for key, value in metrics.items() if key.startswith("test/")}
            info = {**parts.info, "mlflow_run_id": run_id, "metrics": tested}
            version = register_model(dataclasses.replace(parts, info=info), data, run_id)
            log.info("registered model %s version %s", REGISTERED_MODEL, version)


def log_final_metrics(
    client: MlflowClient, run_id: str, metrics: dict[str, float | int], step: int
) -> None:
    """Make metrics.json's values the run's latest ones; values Lightning already logged are
    not repeated, as that would add a point to their per-epoch history."""
    latest = client.get_run(run_id).data.metrics
    final = {metric_key(name): float(value) for name, value in metrics.items()}
    mlflow.log_metrics({k: v for k, v in final.items() if latest.get(k) != v}, step=step)


def training_curves(client: MlflowClient, run_id: str, monitor: str) -> Figure | None:
    """Train loss and the monitored val metric per epoch, from the run's history (None
    before any epoch)."""

    def history(name: str) -> list[Any]:
        return client.get_metric_history(run_id, metric_key(name))

    # Loggers only see fit-time validation (collect_metrics re-validates without them).
    if not history(monitor):
        return None
    epoch_of = {m.step: int(m.value) + 1 for m in history("epoch")}
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, val_ax = fig.subplots(1, 2)
    for name in ("train/loss", monitor):
        ax = loss_ax if name.startswith("train/") else val_ax
        points = sorted((epoch_of[m.step], m.value) for m in history(name) if m.step in epoch_of)
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=name)
    for ax, title in ((loss_ax, "training loss (BPR)"), (val_ax, "validation")):
        ax.set(title=title, xlabel="epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend()
    return fig


def log_test_report(net: RecommenderNet, data: ProcessedData, ks: list[int]) -> dict[str, float]:
    """segments.json over every test user (returned as run metrics: the segments, catalogue
    coverage, popularity percentile and Gini at each K), and the plots of a test-user sample:
    Recall/NDCG against K and the popularity of recommended items."""
    everyone = EvalSet.for_split(data, "test")
    sample = EvalSet.for_split(data, "test", max_users=PLOT_MAX_USERS)
    with torch.inference_mode():
        _, ranked = evaluate_full(net, everyone, ks)
        values, sampled = evaluate_full(net, sample, PLOT_KS)
    report = segment_report(ranked, everyone, data, ks)
    mlflow.log_dict(report, "segments.json")
    seen = torch.cat([data.train.items, data.val.items])
    popularity = torch.bincount(seen, minlength=data.n_items)
    top = torch.cat([b.items[:, :TOP_K][b.valid[:, :TOP_K]] for b in sampled])
    mlflow.log_figure(ranking_at_k(values), "plots/test_ranking_at_k.png")
    figure = popularity_figure(popularity, seen, top, values["n_users"])
    mlflow.log_figure(figure, "plots/popularity.png")
    return run_metrics(report)


def ranking_at_k(values: dict[str, float]) -> Figure:
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for label in ("Recall", "NDCG"):
        ax.plot(PLOT_KS, [values[f"{label.lower()}@{k}"] for k in PLOT_KS], label=f"{label}@K")
    ax.set(title=f"test, {values['n_users']:,} users", xlabel="K", ylim=(0, None))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def popularity_figure(
    popularity: torch.Tensor,
    seen_items: torch.Tensor,
    top: torch.Tensor,
    n_users: int,
) -> Figure:
    """How popular (in train + val) the items recommended to `n_users` test users are, against
    interactions and the catalogue."""
    scalars = popularity_bias(top, popularity)
    series = {
        "train + val interactions": popularity[seen_items],
        "catalogue items": popularity,
        f"recommended (test top-{TOP_K})": popularity[top],
    }
    bins = np.geomspace(1, int(popularity.max()) + 2, 30)  # counts + 1: zero on a log axis
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for label, counts in series.items():
        hist, _ = np.histogram(counts.numpy() + 1, bins)
        ax.stairs(hist / max(1, hist.sum()), bins, label=label)
    ax.set(
        xscale="log",
        xlabel="train + val interactions of the item + 1",
        ylabel="share",
        title=f"{n_users:,} test users: coverage@{TOP_K} {scalars['coverage']:.1%}, "
        f"mean popularity percentile {scalars['avg_popularity_percentile']:.0f}",
    )
    ax.legend()
    return fig


def register_model(parts: BundleParts, data: ProcessedData, run_id: str) -> str:
    """Log the pyfunc of pyfunc_model.py, with the parts written as its bundle, into the
    active run and register it as a new version of `recsys`; returns the version."""
    sha = str(data.metadata.get("input_sha256"))
    example = pl.read_parquet(data.path / "users.parquet", n_rows=1)["user_id"].to_list()
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp, MLFLOW_ARTIFACT)
        bundle.mkdir()
        write_bundle(parts, bundle)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={MLFLOW_ARTIFACT: str(bundle)},
            signature=SIGNATURE,
            input_example=pd.DataFrame({"user_id": example}),
            registered_model_name=REGISTERED_MODEL,
            tags={"run_id": run_id, "input_sha256": sha},
            pip_requirements=[f"{name}=={metadata.version(name)}" for name in MODEL_REQUIREMENTS],
        )
    version = str(info.registered_model_version)
    MlflowClient().update_model_version(
        REGISTERED_MODEL,
        version,
        description=f"recsys-train run {run_id} ({type(parts.net).__name__}), input sha256 {sha}",
    )
    return version
