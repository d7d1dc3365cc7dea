"""LightningModule: the configured loss (`model.loss`, `training/loss.py`) for training,
full-ranking metrics for val/test.

The math lives in the net (`recsys.models`) and in `recsys.evaluation`; this class only wires
them into Lightning's loop, logging and checkpoints.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torchmetrics import MaxMetric

from recsys import __version__
from recsys.evaluation.metrics import RankingMetrics
from recsys.evaluation.protocols import rank_batch
from recsys.models.base import RecommenderNet
from recsys.training.loss import LOSSES, LossTerms
from recsys.training.options import ModuleOptions

# Solved nets (EASE, iALS, popularity) return no loss from training_step, on purpose: their
# `solve` runs at epoch start. (Manual optimisation would not warn, but it leaves global_step
# at 0, and ModelCheckpoint saves nothing at an unchanged step.)
warnings.filterwarnings("ignore", message="`training_step` returned `None`")

# Learning-rate scaling rules: lr x (global batch / reference batch) ** exponent.
LR_SCALING = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


def lr_scale(
    global_batch: int, rule: str, reference_batch: int, max_batch: int | None = None
) -> float:
    """Factor on a learning rate tuned at `reference_batch` for a run at `global_batch`;
    batches above `max_batch` keep the rate of `max_batch`."""
    batch = global_batch if max_batch is None else min(global_batch, max_batch)
    return (batch / reference_batch) ** LR_SCALING[rule]


def monitored_k(monitor: str) -> int:
    """K of a monitored val ranking metric (`val/ndcg@10` -> 10); other names are refused."""
    name, _, k = monitor.partition("@")
    if name not in ("val/ndcg", "val/recall") or not k.isdigit() or int(k) < 1:
        raise ValueError(
            f"optimized_metric must be val/ndcg@K or val/recall@K (K >= 1), got {monitor!r}"
        )
    return int(k)


class RecommenderModule(L.LightningModule):
    def __init__(
        self,
        net: RecommenderNet,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        l2_reg: float = ModuleOptions.l2_reg,
        ks: Sequence[int] = ModuleOptions.ks,
        lr_scaling: str = ModuleOptions.lr_scaling,
        lr_reference_batch: int = ModuleOptions.lr_reference_batch,
        lr_scaling_max_batch: int | None = ModuleOptions.lr_scaling_max_batch,
        compile_step: bool = ModuleOptions.compile_step,
        loss: str = ModuleOptions.loss,
        monitor: str = ModuleOptions.monitor,
    ) -> None:
        super().__init__()
        if lr_scaling not in LR_SCALING:
            raise ValueError(f"lr_scaling must be one of {sorted(LR_SCALING)}, got {lr_scaling!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
        self.loss_fn = LOSSES[loss]
        # Plain values only: checkpoints must load with torch.load(weights_only=True).
        self.save_hyperparameters({"l2_reg": float(l2_reg), "ks": [int(k) for k in ks]})
        self.lr_scaling = lr_scaling
        self.lr_reference_batch = int(lr_reference_batch)
        self.lr_scaling_max_batch = (
            None if lr_scaling_max_batch is None else int(lr_scaling_max_batch)
        )
        self.compile_step = bool(compile_step)
        self._step_fn: Callable[..., LossTerms] | None = None
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.l2_reg = float(l2_reg)
        self.monitor = monitor
        self.ks = sorted({int(k) for k in ks} | {monitored_k(monitor)})
        self.val_metrics = RankingMetrics(self.ks)
        self.test_metrics = RankingMetrics(self.ks)
        self.val_best = MaxMetric()
        self.val_best.persistent(True)  # a resumed run remembers its best epoch
        self._loss_steps = 0
        self._loss_sum = torch.zeros(())
        # log(n_items * q(item)) of the data's negative sampler (None: uniform draws), taken
        # from the datamodule when training starts.
        self.negative_log_q: torch.Tensor | None = None

    # --- training -------------------------------------------------------------------------
    def loss_terms(self, users, items) -> LossTerms:
        """The configured loss (`model.loss`) and the L2 term, for one batch."""
        log_q = self.negative_log_q
        return self.loss_fn(self.net, users, items, None if log_q is None else log_q[items[:, 1:]])

    def on_train_start(self) -> None:
        sampler = getattr(self.trainer.datamodule, "sampler", None)
        self.negative_log_q = getattr(sampler, "log_q_ratio", None)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | None:
        users, items = batch  # items [P, 1 + K]: a positive and its negatives per row
        if not self.net.trainable:
            return None  # the epoch's work was the solve (on_train_epoch_start)
        loss, reg = self.step_fn()(users, items)
        # Summed on the device and logged once per epoch: a per-step self.log would copy the
        # loss to the host (a device sync) on every step.
        self._loss_sum += loss.detach()
        self._loss_steps += 1
        return loss + self.l2_reg * reg

    def step_fn(self) -> Callable[..., LossTerms]:
        """`loss_terms`, through `torch.compile` with `compile_step` (fused kernels for the
        step's elementwise work; compiled once, at the first step, and once more for the
        epoch's shorter last batch)."""
        if self._step_fn is None:
            self._step_fn = torch.compile(self.loss_terms) if self.compile_step else self.loss_terms
        return self._step_fn

    def on_train_epoch_start(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_steps = 0
        if not self.net.trainable:  # closed form or one solver sweep on the train pairs
            self.net.solve(*self.trainer.datamodule.train_pairs)

    def on_train_epoch_end(self) -> None:
        if self._loss_steps:
            self.log("train/loss", self._loss_sum / self._loss_steps, sync_dist=True, prog_bar=True)

    def configure_optimizers(self) -> Any:
        if not self.net.trainable or self.optimizer_factory is None:
            return None
        optimizer = self.optimizer_factory(params=self.parameters())
        scale = self.lr_scale()
        for group in optimizer.param_groups:
            group["lr"] *= scale
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor, "interval": "epoch"},
        }

    def lr_scale(self) -> float:
        """Factor on the configured learning rate (which is the rate at `lr_reference_batch`)
        for this run's global batch, so that `data.batch_size: auto` keeps its quality."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        batch = getattr(datamodule, "train_batch_size", None)
        if batch is None:
            return 1.0
        global_batch = batch * self.trainer.world_size
        return lr_scale(
            global_batch, self.lr_scaling, self.lr_reference_batch, self.lr_scaling_max_batch
        )

    # --- evaluation -----------------------------------------------------------------------
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        ranked = rank_batch(self.net, batch, max(self.ks))
        self.val_metrics.update(ranked.hits, ranked.n_relevant)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        ranked = rank_batch(self.net, batch, max(self.ks))
        self.test_metrics.update(ranked.hits, ranked.n_relevant)

    def _log_ranking(self, prefix: str, metric: RankingMetrics) -> dict[str, torch.Tensor]:
        values = metric.compute()  # synced over ranks: each rank summed disjoint users
        metric.reset()
        for name, value in values.items():
            # Already equal on every rank; sync_dist only averages equal values (and keeps
            # Lightning from warning about unsynced epoch metrics).
            self.log(f"{prefix}/{name}", value.float(), sync_dist=True)
        return values

    def on_validation_epoch_end(self) -> None:
        values = self._log_ranking("val", self.val_metrics)
        if not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            self.val_best.update(values[self.monitor.removeprefix("val/")])
            self.log(f"{self.monitor}_best", self.val_best.compute())

    def on_test_epoch_end(self) -> None:
        self._log_ranking("test", self.test_metrics)

    # --- checkpoints ----------------------------------------------------------------------
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Checkpoints written before the best-so-far metric was renamed still resume."""
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith("val_ndcg_best.")]:
            state["val_best." + key.removeprefix("val_ndcg_best.")] = state.pop(key)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """What `recsys-eval` / `recsys-package` need to rebuild the net without this class
        (callbacks add to it, e.g. the MLflow run: `recsys.training.callbacks`)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        metadata = getattr(datamodule, "metadata", {}) if datamodule is not None else {}
        checkpoint.setdefault("recsys", {}).update(
            {
                "version": __version__,
                "net": self.net.spec(),
                "data": {
                    "processed_dir": str(getattr(datamodule, "processed_dir", "")),
                    "n_users": self.net.n_users,
                    "n_items": self.net.n_items,
                    "input_sha256": metadata.get("input_sha256"),
                },
            }
        )
