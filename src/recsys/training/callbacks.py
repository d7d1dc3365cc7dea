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
