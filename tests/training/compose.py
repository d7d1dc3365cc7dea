"""Build train/eval configs through Hydra's compose API, as the CLI would."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from recsys.config import CONFIG_DIR

QUIET = ["callbacks=checkpoint_only", "logger=none", "trainer.enable_progress_bar=false"]


def compose_config(name: str, overrides: list[str], out_dir: Path | None = None) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    if out_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(out_dir)
            cfg.paths.log_dir = str(out_dir / "logs")
    return cfg


def train_config(processed: Path, out_dir: Path, *overrides: str) -> DictConfig:
    return compose_config(
        "train",
        [f"data.processed_dir={processed}", "trainer.max_epochs=2", *QUIET, *overrides],
        out_dir,
    )
