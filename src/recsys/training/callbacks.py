"""Callbacks Lightning lacks in the form we need."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor

from recsys.training.loss import triplets

log = logging.getLogger(__name__)


class Throughput(L.Callback):
    """Train triplets per second: per epoch as `train/samples_per_sec` (summed over ranks), and
    over the whole fit (`samples` / `seconds`, metrics.json's figure); plus `time/fit_s`, wall
    seconds since fitting began, validation included (the x axis of time to quality).

    An epoch is timed up to its last optimizer step (validation runs inside the epoch, before
    `on_train_epoch_end`). Lightning's ThroughputMonitor needs a FLOP count and reports per
    batch; this counts what the loss sees. A solved net (EASE, iALS) counts the train
    interactions each solve sweeps."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._fit_start = self._epoch_start = self._last_batch_end = 0.0
        self._epoch_samples = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epoch_start = self._last_batch_end = time.perf_counter()
        self._epoch_samples = 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        self._epoch_samples += triplets(batch[1])
        last = idx + 1 == trainer.num_training_batches
        if last and pl_module.device.type == "cuda":  # steps are only queued: time their end
            torch.cuda.synchronize(pl_module.device)
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not pl_module.net.trainable:
            self._epoch_samples = int(trainer.datamodule.train_pairs[0].numel())
        seconds = self._last_batch_end - self._epoch_start
        self.seconds += seconds
        self.samples += self._epoch_samples
        rate = self._epoch_samples / max(seconds, 1e-9)
        pl_module.log("train/samples_per_sec", rate, sync_dist=True, reduce_fx="sum")
        fit_s = time.perf_counter() - self._fit_start
        pl_module.log("time/fit_s", fit_s, sync_dist=True, reduce_fx="max")

    def rate(self, world_size: int) -> float | None:
        """The job's triplets per second over the fit: every rank runs the same number of
        equal-sized batches, so job rate = rank rate x ranks."""
        return self.samples / self.seconds * world_size if self.seconds > 0 else None


class MLflowRunInCheckpoint(L.Callback):
    """Every checkpoint names the MLflow run it was trained in, so a resumed fit continues
    that run and a packaged model says where it came from."""

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        from lightning.pytorch.loggers import MLFlowLogger

        run_id = next((lg.run_id for lg in trainer.loggers if isinstance(lg, MLFlowLogger)), None)
        checkpoint.setdefault("recsys", {})["mlflow_run_id"] = run_id


class OptionalLearningRateMonitor(LearningRateMonitor):
    """LearningRateMonitor that steps aside with `logger=none` (the stock one raises) and for
    models without an optimizer (popularity), so one callbacks group fits every run."""

    def on_train_start(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if not trainer.loggers or not trainer.optimizers:
            self.logging_interval = None
            self._active = False
            return
        self._active = True
        super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if getattr(self, "_active", False):
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if getattr(self, "_active", False):
            super().on_train_epoch_start(trainer, *args, **kwargs)


class OptunaPruning(L.Callback):
    """Inside an Optuna search (`hparams_search=*_optuna`): report the monitored metric after
    every validation, stop the trial when the pruner says it is beaten, and stop it when the
    search's time budget is spent. Outside a search it does nothing.

    Optuna's own PyTorchLightningPruningCallback targets the old `pytorch_lightning` package,
    and it knows no budget; this is the same report/should_prune loop for `lightning`."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from recsys.training.tuning import active_trial

        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        current, stop = active_trial(), False
        value = trainer.callback_metrics.get(self.monitor)
        if current is not None and value is not None:
            current.trial.report(float(value), step=trainer.current_epoch)
            if current.trial.should_prune():
                current.pruned = stop = True
            elif current.time_is_up():
                current.out_of_budget = stop = True
        # Only the sweeper's process holds the trial: under DDP the other ranks learn the
        # decision here (Lightning does not sync should_stop; EarlyStopping does the same).
        if trainer.strategy.reduce_boolean_decision(stop, all=False):
            trainer.should_stop = True


class EpochLog(L.Callback):
    """One log line per epoch (loss, the monitored val metric and its best, triplets/s, fit
    time) where no progress bar shows them: with the bar off (`make demo`) or output that is
    not a terminal (CI logs, cluster pods), which otherwise print nothing for minutes.

    Written when the next epoch starts (or training ends): callbacks' `on_train_epoch_end`
    runs before the module's, which logs the epoch's loss."""

    def __init__(self, monitor: str, label: str = "epoch") -> None:
        self.monitor = monitor
        self.label = label
        self._ended: int | None = None  # the epoch whose line is due

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._ended = trainer.current_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write(trainer)

    def _write(self, trainer: L.Trainer) -> None:
        epoch, self._ended = self._ended, None
        if epoch is None:
            return
        if trainer.progress_bar_callback is not None and sys.stderr.isatty():
            return  # the bar shows it
        if not trainer.is_global_zero:
            return
        logged = trainer.callback_metrics
        parts = [f"{self.label} {epoch + 1}/{trainer.max_epochs}"]
        for name, label, fmt in (
            ("train/loss", "loss", "{:.4f}"),
            (self.monitor, self.monitor, "{:.4f}"),
            (f"{self.monitor}_best", "best", "{:.4f}"),
            ("train/samples_per_sec", "triplets/s", "{:,.0f}"),
            ("time/fit_s", "fit s", "{:.0f}"),
        ):
            if name in logged:
                parts.append(f"{label} {fmt.format(float(logged[name]))}")
        log.info(", ".join(parts))
