"""The sweeper's structured config: hydra-optuna-sweeper's, plus a time budget, a pruner and
the final job that tests and registers the best trial."""

# No `from __future__ import annotations`: Hydra's plugin scan executes this module outside
# sys.modules, where dataclasses cannot resolve string annotations.
from dataclasses import dataclass, field
from typing import Any, List, Optional  # noqa: UP035 (OmegaConf reads these at runtime)

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf


@dataclass
class RecsysOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "hydra_plugins.recsys_optuna_sweeper.recsys_optuna_sweeper.RecsysOptunaSweeper"
    direction: Any = "maximize"
    n_jobs: int = 1
    # Seconds of wall clock for the whole search: no trial starts after it, and the running
    # trial stops at its next validation (null: n_trials alone bounds the search).
    timeout: Optional[float] = None  # noqa: UP045
    # An Optuna pruner (instantiated), fed each trial's per-epoch optimized metric.
    pruner: Any = field(
        default_factory=lambda: {
            "_target_": "optuna.pruners.MedianPruner",
            "n_startup_trials": 4,
            "n_warmup_steps": 2,
        }
    )
    # Trial 0 runs the config's own values of the searched keys (the shipped defaults).
    enqueue_defaults: bool = True
    # Keep back as much of `timeout` as the best trial so far took, for the final job's refit:
    # the whole search, refit included, then stays near the budget.
    reserve_final_job: bool = True
    # Overrides for one last job on the best trial: refit it on train + val for its selected
    # epochs (recsys.training.refit), test that and register it.
    final_job: List[str] = field(  # noqa: UP006
        default_factory=lambda: ["train=false", "refit=true", "test=true", "register=true"]
    )


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="recsys_optuna",
    node=RecsysOptunaSweeperConf,
    provider="recsys",
)
