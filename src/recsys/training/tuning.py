"""The Optuna trial a training run belongs to, shared between the sweeper (which asks for
trials and runs them in this process) and the Lightning callback that reports each epoch's
validation metric and stops pruned or over-budget trials.

In-process state because Hydra's basic launcher runs each trial as a function call: the
trial object cannot travel through the job's config (it is not data).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass
class ActiveTrial:
    trial: Any  # optuna.trial.Trial
    deadline: float | None = None  # time.monotonic() after which the search has no budget left
    pruned: bool = False
    out_of_budget: bool = False

    def time_is_up(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


_active: ActiveTrial | None = None


def active_trial() -> ActiveTrial | None:
    return _active


def set_active_trial(trial: ActiveTrial | None) -> None:
    global _active
    _active = trial
