"""Structured-config schemas: Hydra type-checks overrides against them (wrong type -> clear error).

Registered in Hydra's ConfigStore on import; YAML files in `conf/` extend them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from recsys.data.options import BatchOptions, PrepareOptions, SplitKind, SyntheticSpec
from recsys.evaluation import DEFAULT_KS

# The configs live at the project root (src/recsys/config.py -> <root>/conf), which an
# editable install keeps; RECSYS_CONFIG_DIR points elsewhere (e.g. a copied conf/).
CONFIG_DIR = Path(
    os.environ.get("RECSYS_CONFIG_DIR") or Path(__file__).resolve().parents[2] / "conf"
).resolve()


@dataclass
class DataConfig:
    """Where the data lives, how raw reviews become the processed directory (recsys-preprocess,
    defaults: PrepareOptions) and how training batches are drawn from it (recsys-train's
    LightningDataModule, defaults: BatchOptions). conf/data/default.yaml sets no value twice."""

    _target_: str = "recsys.data.datamodule.RecsysDataModule"
    # Raw reviews (.jsonl or .jsonl.gz, Amazon Reviews 2023 or 2014/2018 schema).
    input: str | None = None
    processed_dir: str = MISSING
    min_interactions: int = PrepareOptions.min_interactions
    split: SplitKind = PrepareOptions.split
    val_fraction: float = PrepareOptions.val_fraction
    test_fraction: float = PrepareOptions.test_fraction
    # An integer, or "auto" (Any: OmegaConf has no int | str).
    batch_size: Any = BatchOptions.batch_size
    num_negatives: int = BatchOptions.num_negatives
    eval_batch_size: int = BatchOptions.eval_batch_size
    val_max_users: int | None = BatchOptions.val_max_users
    seed: int = BatchOptions.seed
    recency_half_life_days: float | None = BatchOptions.recency_half_life_days
    negative_popularity_exponent: float = BatchOptions.negative_popularity_exponent


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


@dataclass
class ModuleConfig:
    """The LightningModule around a net (the `model` group): loss weights, optimizer, cutoffs."""

    _target_: str = "recsys.training.module.RecommenderModule"
    net: Any = MISSING
    optimizer: Any = None
    scheduler: Any = None
    l2_reg: float = 0.0
    loss: Loss = Loss.softmax
    # Cutoffs of the val/test Recall@K and NDCG@K (the monitored K is always added: it selects
    # epochs).
    ks: list[int] = field(default_factory=lambda: list(DEFAULT_KS))
    # optimizer.lr is the rate at lr_reference_batch; other batches scale it by this rule.
    lr_scaling: LrScaling = LrScaling.sqrt
    lr_reference_batch: int = 1024
    # Batches above this keep its rate (null: no limit); sqrt scaling overshoots at large ones.
    lr_scaling_max_batch: int | None = None
    # The val metric that selects epochs, stops early and drives a scheduler: the run's
    # optimized_metric (val/ndcg@K or val/recall@K).
    monitor: str = "${optimized_metric}"
    # torch.compile the training step (benchmarks/compile_step.py: +10-59% on 2 CPU cores at
    # batches of 4,096+, after 7-13 s of compilation).
    compile_step: bool = False


class Protocol(StrEnum):
    full = "full"
    sampled = "sampled"


@dataclass
class EvalOptions:
    """recsys-eval's `eval.*` settings (docs/REFERENCE.md, Evaluation)."""

    # Where metrics.json, topk.parquet and intervals.json go (written atomically).
    output_dir: str = MISSING
    # Cutoffs; topk.parquet keeps max(k) items per user.
    k: list[int] = field(default_factory=lambda: list(DEFAULT_KS))
    # full: rank all unseen items; sampled: the NCF paper's held-out item against 99 sampled
    # negatives.
    protocol: Protocol = Protocol.full
    batch_size: int = 1024
    # The sampled protocol's negatives per held-out item; the seed of its draws and of the
    # bootstrap.
    n_negatives: int = 99
    seed: int = 0
    # Where scoring runs: auto (the GPU when torch sees one), cpu, cuda or cuda:N.
    device: str = "auto"
    # intervals.json: percentile-bootstrap resamples of the test users per metric (0: none).
    bootstrap: int = 1000
    confidence: float = 0.95


@dataclass
class GenerateConfig(SyntheticSpec):
    """recsys-generate: where to write, plus every generator knob."""

    out: str = MISSING
    task_name: str = "generate"
    paths: Any = None


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(group="data", name="base_data", node=DataConfig)
    store.store(group="model", name="base_module", node=ModuleConfig)
    store.store(group="eval", name="base_eval", node=EvalOptions)
    store.store(name="base_generate", node=GenerateConfig)


register_configs()
