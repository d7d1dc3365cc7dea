"""recsys-recommend's config: a structured config of its own, registered apart from
`recsys.config` and without the conf/ directory.

Why apart: its required key is `model=` (the model to score with), and Hydra reads `model=X`
as a choice in the config group `model` wherever such a group is on the search path, which
conf/ and `recsys.config` both put there for recsys-train. So this app's search path holds
only this node; its run directory and help follow conf/hydra/default.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from recsys.batch.options import ScoringOptions

CONFIG_NAME = "recommend"

HELP = """recsys-recommend: every user's top-K as parquet parts plus manifest.json; rerun to resume.
Usage: recsys-recommend model=MODEL output_dir=DIR [users=all|FILE] [k=10] [exclude_seen=true]
       [workers=1] [device=auto|cpu|cuda] [shard=I/N] [retrieval=auto|exact|ann]
MODEL: a BentoML tag (recsys:latest), models:/recsys/N, models:/recsys@ALIAS, a bundle
directory, or a recsys-train checkpoint (with data.processed_dir=DIR when its data moved).
FILE: parquet or csv with a user_id column (or a single column), or txt with an id a line.
The last line printed is the manifest's path.

Settings are key=value overrides; `-m` runs a sweep over comma-separated values.
`--cfg job` prints the composed config, `--hydra-help` lists Hydra's own flags.

== Config ==
$CONFIG
See docs/BATCH.md and docs/REFERENCE.md, section "Batch top-K"."""


def _hydra() -> dict[str, Any]:
    return {
        "run": {"dir": "${oc.env:PROJECT_ROOT,.}/logs/recommend/runs/${now:%Y-%m-%d_%H-%M-%S}"},
        "sweep": {
            "dir": "${oc.env:PROJECT_ROOT,.}/logs/recommend/multiruns/${now:%Y-%m-%d_%H-%M-%S}",
            "subdir": "${hydra.job.num}",
        },
        "job": {"chdir": False},
        "help": {"app_name": "recsys-recommend", "template": HELP},
    }


@dataclass
class RecommendConfig(ScoringOptions):
    """The model, where the parts go, plus every scoring setting (defaults and their meaning:
    recsys.batch.options.ScoringOptions)."""

    model: str = MISSING
    output_dir: str = MISSING
    # With a checkpoint: the processed directory it was trained on (default: the one it records).
    data: Any = field(default_factory=lambda: {"processed_dir": None})
    hydra: Any = field(default_factory=_hydra)


ConfigStore.instance().store(name=CONFIG_NAME, node=RecommendConfig)
