"""What `recsys-train` runs: fit, select the best epoch on val, refit it on train + val
(`refit.py`), test, and hand the run to MLflow. The entry point (`recsys.train`) only composes
the config and calls `train`."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from recsys.errors import RecsysError
from recsys.training.builders import (
    build_datamodule,
    build_module,
    instantiate_group,
    instantiate_loggers,
    log_config,
)

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit and test; returns (metrics, objects) for the entry point and for tests."""
    import lightning as L
    from hydra.utils import instantiate

    from recsys.data.io import write_json
    from recsys.training import refit
    from recsys.training.ddp import ddp_job, leave_process_group, wait_for_children
    from recsys.training.module import monitored_k
    from recsys.training.results import collect_metrics, test_metrics

    try:
        monitored_k(str(cfg.optimized_metric))
    except ValueError as err:
        raise RecsysError(str(err)) from None
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if not cfg.get("train", True) and not cfg.get("ckpt_path"):
        raise RecsysError("train=false tests a trained model: give it ckpt_path=FILE")
    datamodule = build_datamodule(cfg)
    module = build_module(cfg, datamodule)
    if not module.net.trainable and _distributed(cfg.trainer):
        raise RecsysError(
            f"model {type(module.net).__name__} is fitted by a solver on one device, not by "
            "distributed gradient steps: use trainer=cpu or trainer=gpu"
        )
    from recsys.training.callbacks import EpochLog, MLflowRunInCheckpoint, Throughput

    # Always there, whatever the callbacks group: metrics.json reports the throughput, and
    # checkpoints name their MLflow run.
    callbacks = [
        *instantiate_group(cfg.get("callbacks")),
        Throughput(),
        MLflowRunInCheckpoint(),
        EpochLog(str(cfg.optimized_metric)),
    ]
    loggers = instantiate_loggers(cfg.get("logger"), cfg.get("ckpt_path"))
    overrides: dict[str, Any] = {}
    if not module.net.trainable:
        # Solved nets fit once per epoch (RecommenderModule.on_train_epoch_start) and take no
        # gradient steps: one batch keeps the loop going; a closed form needs one epoch only.
        overrides["limit_train_batches"] = 1
        if module.net.single_solve:
            overrides["max_epochs"] = 1
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)
    log_config(loggers, cfg)

    do_refit = refit.wanted(cfg)
    if do_refit and _distributed(cfg.trainer):
        log.warning("refit on train + val runs in one process: skipped under DDP (refit=false)")
        do_refit = False
    with ddp_job(cfg.paths.output_dir):
        if cfg.get("train", True):
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        best = _best_checkpoint(trainer)
        if best and cfg.get("train", True):  # a resumed run may point at its earlier refit
            best = refit.selection_of(best)
        if not cfg.get("train", True) and cfg.get("ckpt_path"):
            best = str(cfg.ckpt_path)  # test (and register) the given checkpoint as it is
        test = cfg.get("test", True)
        metrics = collect_metrics(
            trainer, module, datamodule, best, test=test and not (do_refit and best)
        )
        if do_refit and best:  # the model val selected, retrained on train + val: the final one
            # Where the selection run keeps its checkpoints; a given one's run is not ours.
            trained = cfg.get("train", True)
            ckpt_dir = Path(best).parent if trained else Path(cfg.paths.output_dir, "checkpoints")
            output = str(ckpt_dir / "best.ckpt")
            batch = datamodule.train_batch_size
            refit_trainer, refit_module, refit_data = refit.refit(cfg, best, batch, output)
            metrics["refit/epochs"] = refit_trainer.max_epochs
            if test:
                metrics.update(test_metrics(refit_trainer, refit_module, refit_data))
            best = output
        leave_process_group()  # what follows runs on rank 0 alone
        if trainer.is_global_zero:
            write_json(Path(cfg.paths.output_dir) / "metrics.json", metrics)
            _track(cfg, loggers, trainer, datamodule, metrics, best)
        wait_for_children(trainer)
    return metrics, {"trainer": trainer, "module": module, "datamodule": datamodule, "best": best}


def _distributed(trainer_cfg: DictConfig) -> bool:
    """A DDP strategy (by name or `_target_`): it wraps the module in DistributedDataParallel,
    which refuses one without trainable parameters."""
    strategy = trainer_cfg.get("strategy")
    if isinstance(strategy, DictConfig):
        strategy = strategy.get("_target_")
    return "ddp" in str(strategy or "").lower()


def _best_checkpoint(trainer: Any) -> str | None:
    ckpt = getattr(trainer, "checkpoint_callback", None)
    path = getattr(ckpt, "best_model_path", "") if ckpt is not None else ""
    return path if path and os.path.exists(path) else None


def _track(cfg, loggers, trainer, datamodule, metrics, best) -> None:
    from lightning.pytorch.loggers import MLFlowLogger

    for lg in loggers:
        if isinstance(lg, MLFlowLogger):
            from recsys.tracking.mlflow import finish_run

            finish_run(lg, cfg, trainer, datamodule, metrics, best)


def resume_in_place(argv: list[str]) -> list[str]:
    """`ckpt_path=RUN/checkpoints/x.ckpt` without `hydra.run.dir`: continue in RUN, so the
    restored checkpoint callback keeps its best-so-far (it forgets it in a new directory)."""
    ckpt = next((a.split("=", 1)[1] for a in argv if a.startswith("ckpt_path=")), None)
    if not ckpt or any(a.startswith(("hydra.run.dir=", "-m", "--multirun")) for a in argv):
        return argv
    if "train=false" in argv:  # testing a checkpoint: a run of its own, not the trained one's
        return argv
    path = Path(ckpt).resolve()
    if path.parent.name == "checkpoints" and path.is_file():
        return [*argv, f"hydra.run.dir='{path.parent.parent}'"]
    return argv


class _NoAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_third_party() -> None:
    """One copy of each log line and nothing that tells the user nothing: Lightning's own
    handler (it prints every line a second time beside Hydra's), its product tips, MLflow's
    per-file download bars and warnings about names and deprecations we cannot act on."""
    import lightning  # noqa: F401  (its import installs the handler removed here)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True  # to the root logger, which Hydra configures
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoAdvertisements())
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow forbids '@': Lightning logs val/ndcg@10 as val/ndcg10 and warns once per metric.
    warnings.filterwarnings("ignore", message="MLFlow only allows")
    # Lightning 2.6 on torch 2.13, in Lightning's own code.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
