"""Structured-config schemas: Hydra type-checks overrides against them (wrong type -> clear error).

Registered in Hydra's ConfigStore on import; YAML files in `conf/` extend them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from recsys.data.options import SplitKind, SyntheticSpec

# The configs live at the project root (src/recsys/config.py -> <root>/conf), which an
# editable install keeps; RECSYS_CONFIG_DIR points elsewhere (e.g. a copied conf/).
CONFIG_DIR = Path(
    os.environ.get("RECSYS_CONFIG_DIR") or Path(__file__).resolve().parents[2] / "conf"
).resolve()


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
class GenerateConfig(SyntheticSpec):
    """recsys-generate: where to write, plus every generator knob."""

    out: str = MISSING
    task_name: str = "generate"
    paths: Any = None


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(group="data", name="base_data", node=DataConfig)
    store.store(name="base_generate", node=GenerateConfig)


register_configs()
