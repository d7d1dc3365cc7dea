"""A budgeted, pruning Optuna search over recsys-train runs.

hydra-optuna-sweeper asks, launches and tells trials, but it has no time budget, no pruning
(its trials cannot report per-epoch values) and it ends with a YAML file. This sweeper keeps
its search-space parsing and replaces the loop: one trial at a time in this process, the
trial handed to the `OptunaPruning` callback (`recsys.training.tuning`), no new trial after
`timeout` seconds, and at the end one more job that refits the best trial on train + val,
tests it and registers it (the only test metrics the search computes: selection is on
validation). With `reserve_final_job`, the search keeps back as much of the budget as the
best trial so far took, so that its refit fits in the same budget.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

# Imported so Hydra's plugin scan registers the config with the ConfigStore.
from hydra_plugins.recsys_optuna_sweeper.config import RecsysOptunaSweeperConf  # noqa: F401

log = logging.getLogger(__name__)


def search_deadline(start: float, timeout: float | None, reserve: float) -> float | None:
    """time.monotonic() after which no trial starts and the running one stops: the budget
    less what the final job is expected to take (None: no budget)."""
    if timeout is None:
        return None
    return start + max(0.0, float(timeout) - reserve)


class RecsysOptunaSweeper(Sweeper):
    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        search_space: Any,
        custom_search_space: str | None,
        params: DictConfig | None,
        timeout: float | None = None,
        pruner: Any = None,
        final_job: list[str] | None = None,
        enqueue_defaults: bool = True,
        reserve_final_job: bool = True,
    ) -> None:
        from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

        if n_jobs != 1:
            raise ValueError("recsys_optuna runs one trial at a time (n_jobs=1): trials report "
                             "per-epoch values to the pruner from this process")  # fmt: skip
        self.impl = OptunaSweeperImpl(
            sampler, direction, storage, study_name, n_trials, 1, max_failure_rate,
            search_space, custom_search_space, params,
        )  # fmt: skip
        self.timeout = timeout
        self.pruner = pruner
        self.final_job = list(final_job or [])
        self.enqueue_defaults = enqueue_defaults
        self.reserve_final_job = reserve_final_job

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        import optuna
        from hydra.utils import instantiate
        from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

        from recsys.training.tuning import ActiveTrial, set_active_trial

        impl = self.impl
        impl._process_searchspace_config()
        params_conf = impl._parse_sweeper_params_config() + list(arguments)
        space, fixed = create_params_from_overrides(params_conf)
        for name in fixed:
            space.pop(name, None)
        directions = impl._get_directions()
        if len(directions) != 1:
            raise ValueError("recsys_optuna optimizes one metric (the run's optimized_metric)")
        pruner = self.pruner or optuna.pruners.NopPruner()
        if isinstance(pruner, dict | DictConfig):  # Hydra instantiates nested targets already
            pruner = instantiate(pruner)
        study = optuna.create_study(
            study_name=impl.study_name, storage=impl.storage, sampler=impl.sampler,
            pruner=pruner, direction=directions[0], load_if_exists=True,
        )  # fmt: skip
        if self.enqueue_defaults and not study.trials:
            self._enqueue_config_values(study, space)
        start = time.monotonic()
        failures = 0
        for _ in range(impl.n_trials):
            deadline = search_deadline(start, self.timeout, self._reserve(study))
            if deadline is not None and time.monotonic() >= deadline:
                log.info("time budget of %ss spent: no more trials", self.timeout)
                break
            trial = study.ask()
            overrides = impl._configure_trials([trial], space, fixed)[0]
            current = ActiveTrial(trial, deadline)
            set_active_trial(current)
            trial.set_user_attr("overrides", list(overrides))
            began = time.monotonic()
            try:
                ret = impl.launcher.launch([overrides], initial_job_idx=impl.job_idx)[0]
                trial.set_user_attr("output_dir", ret.hydra_cfg.hydra.runtime.output_dir)
                trial.set_user_attr("seconds", time.monotonic() - began)
                value = float(ret.return_value)
            # A failed job (its error is in its log); SystemExit: recsys' user errors, which
            # end the process in a plain run, fail only this trial here.
            except (Exception, SystemExit) as err:
                failures += 1
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                log.warning("trial %d failed: %s", trial.number, err)
                if failures > impl.max_failure_rate * impl.n_trials:
                    raise
                continue
            finally:
                set_active_trial(None)
                impl.job_idx += 1
            if current.pruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                log.info("trial %d pruned at %.6f", trial.number, value)
            else:
                study.tell(trial, value)
                note = " (stopped by the time budget)" if current.out_of_budget else ""
                log.info("trial %d: %.6f%s", trial.number, value, note)
        self._finish(study, time.monotonic() - start)

    def _reserve(self, study: Any) -> float:
        """Seconds kept back for the final job: the best trial's own duration so far (its
        refit trains the selected epochs again, without validation or patience: less)."""
        import optuna

        if not (self.reserve_final_job and self.final_job):
            return 0.0
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            return 0.0
        return float(study.best_trial.user_attrs.get("seconds", 0.0))

    def _enqueue_config_values(self, study: Any, space: dict[str, Any]) -> None:
        """Trial 0 runs the composed config's own values (the shipped defaults): the search
        starts from them and can only select something better on val."""
        config = self.impl.config
        values = {}
        for name, distribution in space.items():
            value = OmegaConf.select(config, name, default=None)
            if value is None:
                return  # a key without a value in the config: nothing sensible to enqueue
            value = getattr(value, "value", value)  # an enum (model.loss) -> its string
            try:
                if not distribution._contains(distribution.to_internal_repr(value)):
                    return
            except (ValueError, TypeError):
                return
            values[name] = value
        study.enqueue_trial(values)
        log.info("trial 0 runs the configured values: %s", values)

    def _finish(self, study: Any, seconds: float) -> None:
        """Print the best trial, write optimization_results.yaml, test and register it."""
        import optuna

        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        states = {s.name.lower(): sum(t.state == s for t in study.trials)
                  for s in optuna.trial.TrialState}  # fmt: skip
        sweep_dir = Path(self.impl.config.hydra.sweep.dir)
        if not done:
            raise RuntimeError(f"no trial completed in {seconds:.0f} s ({states})")
        best = study.best_trial
        results = {
            "name": "recsys_optuna", "study": study.study_name, "seconds": round(seconds, 1),
            "trials": {k: v for k, v in states.items() if v}, "best_trial": best.number,
            "best_value": best.value, "best_params": best.params,
            "best_output_dir": best.user_attrs.get("output_dir"),
        }  # fmt: skip
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
        log.info("best trial %d: %.6f with %s", best.number, best.value, best.params)
        ckpt = Path(best.user_attrs["output_dir"]) / "checkpoints" / "best.ckpt"
        if not self.final_job or not ckpt.is_file():
            return
        tags = f"tags=[best_trial,study_{study.study_name},trial_{best.number}]"
        overrides = [*best.user_attrs["overrides"], *self.final_job, f"ckpt_path={ckpt}", tags]
        ret = self.impl.launcher.launch([overrides], initial_job_idx=self.impl.job_idx)[0]
        self.impl.job_idx += 1
        value = ret.return_value  # raises if the final job failed
        log.info("best trial tested and registered from %s (%s)", ckpt, value)
