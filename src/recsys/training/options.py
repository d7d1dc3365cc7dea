"""The LightningModule's settings and their defaults, in plain stdlib types: the `model`
group's schema (`recsys.config.ModuleConfig`) and `RecommenderModule` both take them from
here, and importing them costs no torch."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from recsys.evaluation import DEFAULT_KS


class LrScaling(StrEnum):
    """How the learning rate follows the global batch (lr x (batch / reference) ** p)."""

    none = "none"  # p = 0
    sqrt = "sqrt"  # p = 1/2: Adam's usual rule
    linear = "linear"  # p = 1: SGD's usual rule


class Loss(StrEnum):
    """The training objective over a positive and its negatives (`training/loss.py`);
    softmax is the default (docs/MODEL_DEFAULTS.md)."""

    bpr = "bpr"  # pairwise: -log sigmoid(s_ui - s_uj), averaged over the negatives
    softmax = "softmax"  # listwise: the positive against all its negatives at once


@dataclass(frozen=True)
class ModuleOptions:
    # Weight of the squared L2 norm of the embedding rows in each batch (per triplet).
    l2_reg: float = 0.0
    # bpr or softmax (training/loss.py); softmax is the default (docs/MODEL_DEFAULTS.md).
    loss: Loss = Loss.softmax
    # Cutoffs of the val/test Recall@K and NDCG@K (the monitored K is always added: it selects
    # epochs).
    ks: tuple[int, ...] = DEFAULT_KS
    # optimizer.lr is the rate at lr_reference_batch; other batches scale it by this rule
    # (none, sqrt or linear).
    lr_scaling: LrScaling = LrScaling.sqrt
    lr_reference_batch: int = 1024
    # Batches above this keep its rate (None: no limit); sqrt scaling overshoots at large ones.
    lr_scaling_max_batch: int | None = None
    # torch.compile the training step (benchmarks/compile_step.py: +10-59% on 2 CPU cores at
    # batches of 4,096+, after 7-13 s of compilation).
    compile_step: bool = False
    # The val metric that selects epochs, stops early and drives a scheduler (the config
    # passes the run's optimized_metric: val/ndcg@K or val/recall@K).
    monitor: str = "val/ndcg@10"
