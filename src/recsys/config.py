"""Structured-config schemas: Hydra type-checks overrides against them (wrong type -> clear error).

Registered in Hydra's ConfigStore on import; YAML files in `conf/` extend them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from recsys.data.options import BatchOptions, PrepareOptions, SplitKind, SyntheticSpec
from recsys.evaluation.options import EvalSettings, Protocol, SegmentSettings
from recsys.lifecycle.options import GateSettings
from recsys.packaging.options import AnnOptions
from recsys.training.options import Loss, LrScaling, ModuleOptions

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
    # The service's feedback log (POST /feedback): its directory or one file; beside the
    # reviews or instead of them (docs/DATA.md, Feedback as input).
    feedback: str | None = None
    # Strings, not EventType: a list of enums would reach MLflow as its repr; PrepareOptions
    # checks the names.
    feedback_events: list[str] = field(
        default_factory=lambda: [str(e) for e in PrepareOptions.feedback_events]
    )
    processed_dir: str = MISSING
    split_from: str | None = PrepareOptions.split_from
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


@dataclass
class ModuleConfig:
    """The LightningModule around a net (the `model` group); defaults and their meaning:
    recsys.training.options.ModuleOptions."""

    _target_: str = "recsys.training.module.RecommenderModule"
    net: Any = MISSING
    optimizer: Any = None
    scheduler: Any = None
    l2_reg: float = ModuleOptions.l2_reg
    loss: Loss = ModuleOptions.loss
    ks: list[int] = field(default_factory=lambda: list(ModuleOptions.ks))
    lr_scaling: LrScaling = ModuleOptions.lr_scaling
    lr_reference_batch: int = ModuleOptions.lr_reference_batch
    lr_scaling_max_batch: int | None = ModuleOptions.lr_scaling_max_batch
    monitor: str = "${optimized_metric}"
    compile_step: bool = ModuleOptions.compile_step


@dataclass
class SegmentOptions:
    """`eval.segments.*`: segments.json (docs/EVALUATION.md, Segments); defaults and their
    meaning: recsys.evaluation.options.SegmentSettings."""

    enabled: bool = SegmentSettings.enabled
    user_activity_edges: list[int] | None = None
    item_popularity_shares: list[float] = field(
        default_factory=lambda: list(SegmentSettings.item_popularity_shares)
    )
    new_item_days: float = SegmentSettings.new_item_days


@dataclass
class EvalOptions:
    """recsys-eval's `eval.*` settings (docs/REFERENCE.md, Evaluation); defaults and their
    meaning: recsys.evaluation.options.EvalSettings."""

    # Where metrics.json, topk.parquet, intervals.json and segments.json go (atomically).
    output_dir: str = MISSING
    k: list[int] = field(default_factory=lambda: list(EvalSettings.k))
    protocol: Protocol = EvalSettings.protocol
    batch_size: int = EvalSettings.batch_size
    n_negatives: int = EvalSettings.n_negatives
    seed: int = EvalSettings.seed
    device: str = EvalSettings.device
    bootstrap: int = EvalSettings.bootstrap
    confidence: float = EvalSettings.confidence
    segments: SegmentOptions = field(default_factory=SegmentOptions)


@dataclass
class GenerateConfig(SyntheticSpec):
    """recsys-generate: where to write, plus every generator knob."""

    out: str = MISSING
    task_name: str = "generate"
    paths: Any = None


@dataclass
class PackageConfig:
    """recsys-package: exactly one source, the BentoML name, and how the two-stage retrieval
    index is built for large catalogues (defaults: recsys.packaging.ann.AnnOptions)."""

    ckpt_path: str | None = None
    model_uri: str | None = None
    data: Any = field(default_factory=lambda: {"processed_dir": None})
    model_name: str = "recsys"
    retrieval: AnnOptions = field(default_factory=AnnOptions)
    task_name: str = "package"
    paths: Any = None


@dataclass
class PromoteConfig:
    """recsys-promote: the candidate version, the split to judge on (default: the one the
    candidate was trained on) and the gate; defaults and their meaning:
    recsys.lifecycle.options.GateSettings."""

    model_uri: str = MISSING
    data: Any = field(default_factory=lambda: {"processed_dir": None})
    metric: str = GateSettings.metric
    margin: float = GateSettings.margin
    force: bool = GateSettings.force
    bootstrap: int = GateSettings.bootstrap
    confidence: float = GateSettings.confidence
    seed: int = GateSettings.seed
    batch_size: int = GateSettings.batch_size
    device: str = GateSettings.device
    task_name: str = "promote"
    paths: Any = None


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(group="data", name="base_data", node=DataConfig)
    store.store(group="model", name="base_module", node=ModuleConfig)
    store.store(group="eval", name="base_eval", node=EvalOptions)
    store.store(name="base_generate", node=GenerateConfig)
    store.store(name="base_package", node=PackageConfig)
    store.store(name="base_promote", node=PromoteConfig)


register_configs()
