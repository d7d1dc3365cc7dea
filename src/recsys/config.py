"""Structured-config schemas: Hydra type-checks overrides against them (wrong type -> clear error).

Registered in Hydra's ConfigStore on import; YAML files in `conf/` extend them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from recsys.data.options import SplitKind

# Source checkout layout: src/recsys/config.py -> <root>/conf
CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


@dataclass
class DataConfig:
    """Where the data lives and how raw reviews become the processed directory."""

    input: str | None = None
    processed_dir: str = MISSING
    min_interactions: int = 5
    split: SplitKind = SplitKind.temporal
    val_fraction: float = 0.1
    test_fraction: float = 0.1


@dataclass
class GenerateConfig:
    """Knobs of the synthetic review generator (see recsys.data.synthetic)."""

    out: str = MISSING
    n_users: int = 20_000
    n_items: int = 5_000
    n_interactions: int = 300_000
    seed: int = 42
    dim: int = 16
    affinity_temperature: float = 0.35
    candidates: int = 96
    popularity_exponent: float = 1.1
    activity_exponent: float = 1.6
    duplicate_rate: float = 0.03
    catalog_at_start: float = 0.3
    start_date: str = "2018-01-01"
    end_date: str = "2023-09-01"


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(group="data", name="base_data", node=DataConfig)
    store.store(name="base_generate", node=GenerateConfig)


register_configs()
