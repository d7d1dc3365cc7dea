"""The refit after model selection: retrain from scratch on train + val for the epoch count
that val selected, with the same seed, batch and settings, and make that the model tested,
registered and served.

Why: under the global temporal split, val is the period just before test, the most telling
one for it, and a model selected on val has never been trained on it. Fitting on train,
selecting on val and then refitting on both is the usual protocol once hyper-parameters are
chosen (e.g. Rendle et al. 2022); on the synthetic data it raised the default NeuMF's test
NDCG@10 by 15-20% (docs/BENCHMARKS.md). The selection run's checkpoint stays beside it as
`selected.ckpt`; `refit=false` tests that one instead, as before.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from recsys.training.builders import build_datamodule, build_module, instantiate_group

log = logging.getLogger(__name__)

SELECTED = "selected.ckpt"  # the val-selected checkpoint (train only), kept beside the refit


def wanted(cfg: DictConfig) -> bool:
    """`refit: auto` refits after training when the run tests or registers (a sweep's trials
    do neither); `true` also refits a given `ckpt_path` with `train=false` (the budgeted
    search's last job); `false` never."""
    mode = str(cfg.get("refit", "auto")).lower()
    if mode not in ("auto", "true", "false"):
        from recsys.errors import RecsysError

        raise RecsysError(f"refit must be auto, true or false, got {cfg.get('refit')!r}")
    final = bool(cfg.get("test", True) or cfg.get("register", True))
    if mode == "false" or not final:
        return False
    return mode == "true" or bool(cfg.get("train", True))


def selected_epochs(checkpoint: str) -> int:
    """Epochs the selected checkpoint trained for (a refit's own output records them)."""
    return _epochs(_state(checkpoint))


def _epochs(state: dict[str, Any]) -> int:
    refit = state.get("recsys", {}).get("refit")
    return int(refit["epochs"]) if refit else int(state["epoch"]) + 1


def selection_of(checkpoint: str) -> str:
    """The val-selected checkpoint behind `checkpoint`: itself, or for a refit (e.g. the
    best.ckpt a resumed run's checkpoint callback still points to) the one it was refit from,
    whose val figures are honest (the refit has trained on val)."""
    refit = _state(checkpoint).get("recsys", {}).get("refit")
    if refit and Path(refit["selected"]).is_file():
        return str(refit["selected"])
    return checkpoint


def _state(checkpoint: str | Path) -> dict[str, Any]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)


def _keep_selected(checkpoint: str, state: dict[str, Any], output: str) -> str:
    """Copy the selected checkpoint (`state`, loaded) to `selected.ckpt` beside the refit's
    output (atomically), once."""
    source = Path(checkpoint)
    target = Path(output).with_name(SELECTED)
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.resolve() == target.resolve():
        return str(target)
    if state.get("recsys", {}).get("refit"):  # an earlier attempt's refit
        return str(target) if target.exists() else checkpoint
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
    return str(target)


def refit(cfg: DictConfig, selected: str, batch_size: int, output: str) -> tuple[Any, Any, Any]:
    """Train on train + val for `selected`'s epoch count and save the result to `output`
    (atomically); returns (trainer, module, datamodule) of the refit, ready to test."""
    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ProgressBar

    state = _state(selected)  # loaded once: epochs, refit marker, MLflow run
    epochs = _epochs(state)
    kept = _keep_selected(selected, state, output)
    selected_meta = state.get("recsys", {})
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # the selection run's init
    datamodule = build_datamodule(cfg, fit_on_val=True, batch_size=batch_size)
    module = build_module(cfg, datamodule)
    overrides: dict[str, Any] = {"max_epochs": epochs, "min_epochs": None}
    if not module.net.trainable:
        overrides["limit_train_batches"] = 1
    from recsys.training.callbacks import EpochLog, Throughput

    bars = [c for c in instantiate_group(cfg.get("callbacks")) if isinstance(c, ProgressBar)]
    callbacks = [*bars, Throughput(), EpochLog(str(cfg.optimized_metric), "refit epoch")]
    trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=False, enable_checkpointing=False,
        limit_val_batches=0, num_sanity_val_steps=0, enable_model_summary=False, **overrides,
    )  # fmt: skip
    log.info("refit on train + val for %d epochs (selected on val: %s)", epochs, kept)
    trainer.fit(module, datamodule=datamodule)
    tmp = Path(output).with_name(f".{Path(output).name}.tmp")
    trainer.save_checkpoint(tmp, weights_only=False)
    state = _state(tmp)
    state["recsys"]["refit"] = {"epochs": epochs, "selected": str(Path(kept).resolve())}
    state["recsys"]["mlflow_run_id"] = selected_meta.get("mlflow_run_id")  # the run it ends
    torch.save(state, tmp)
    os.replace(tmp, output)
    return trainer, module, datamodule
