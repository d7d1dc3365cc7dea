"""Callbacks Lightning lacks in the form we need."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor


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
