"""After fitting: re-measure the selected checkpoint on val and test, and write metrics.json."""

from __future__ import annotations

from typing import Any

COUNT_KEYS = ("n_users",)


def _numbers(logged: dict[str, Any], prefix: str) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for key, value in logged.items():
        if not key.startswith(prefix + "/") or key.endswith("_best"):
            continue
        number = float(value)
        out[key] = int(number) if key.rsplit("/", 1)[1] in COUNT_KEYS else number
    return out


def test_metrics(trainer: Any, module: Any, datamodule: Any) -> dict[str, float | int]:
    """test/* of the module's current weights, and `n_users` (test users)."""
    result = trainer.test(module, datamodule=datamodule, verbose=False)
    tested = _numbers(result[0] if result else {}, "test")
    if "test/n_users" in tested:
        tested["n_users"] = tested.pop("test/n_users")
    return tested


def collect_metrics(
    trainer: Any, module: Any, datamodule: Any, best: str | None, test: bool = True
) -> dict[str, float | int]:
    """val/* and test/* of the best checkpoint (current weights if none was saved, e.g. in
    fast_dev_run), `n_users` (test users), and the training throughput."""
    metrics: dict[str, float | int] = {}
    loggers, trainer.loggers = trainer.loggers, []  # not another epoch in the loggers' curves
    try:
        val = trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
        metrics.update(_numbers(val[0] if val else {}, "val"))
        if test:  # validate() has loaded the best weights into `module`: test those
            metrics.update(test_metrics(trainer, module, datamodule))
    finally:
        trainer.loggers = loggers
    from recsys.training.callbacks import Throughput

    throughput = next((c for c in trainer.callbacks if isinstance(c, Throughput)), None)
    rate = throughput.rate(trainer.world_size) if throughput is not None else None
    if rate is not None:
        metrics["train/samples_per_sec"] = rate
    return metrics
