"""Objects from a composed config: the DataModule, the LightningModule, callbacks and loggers
(lightning-hydra-template's instantiators), shared by the training run and its refit on
train + val (`recsys.training.refit`)."""

from __future__ import annotations

import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from recsys.errors import RecsysError


def target_nodes(group: DictConfig | None) -> list[DictConfig]:
    """The `_target_` entries of a callbacks/logger group (entries set to null are skipped)."""
    return [node for node in (group or {}).values() if node and "_target_" in node]


def instantiate_group(group: DictConfig | None) -> list[Any]:
    from hydra.utils import instantiate

    return [instantiate(node) for node in target_nodes(group)]


def build_datamodule(cfg: DictConfig, **overrides: Any) -> Any:
    """The DataModule, loaded; its checks of data.* settings are user errors, which Hydra's
    instantiate would otherwise wrap in a traceback."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        datamodule = instantiate(cfg.data, **overrides)
    except InstantiationException as err:
        if isinstance(err.__cause__, RecsysError):
            raise err.__cause__ from None
        raise
    datamodule.load()
    return datamodule


def build_module(cfg: DictConfig, datamodule: Any) -> Any:
    """The net sized by the data, wrapped in the LightningModule."""
    from hydra.utils import instantiate

    try:
        net = instantiate(cfg.model.net, n_users=datamodule.n_users, n_items=datamodule.n_items)
    except Exception as err:  # pretrained checkpoints or bad sizes: a user error with a cause
        cause = err.__cause__ or err
        raise RecsysError(f"cannot build model {cfg.model.net._target_}: {cause}") from err
    return instantiate(cfg.model, net=net)


def instantiate_loggers(group: DictConfig | None, ckpt_path: str | None) -> list[Any]:
    """Loggers; a resumed MLflow logger continues the killed run instead of starting anew."""
    from hydra.utils import instantiate

    # torchrun (the Helm chart's multi-node Job) starts every rank at once with RANK set, and
    # MLFlowLogger opens its store in __init__: two ranks creating a fresh SQLite/PostgreSQL
    # schema together fail ("table ... already exists"). Loggers only write from global rank 0,
    # so the others get none. (Lightning's own launcher sets no RANK and starts its children
    # after this parent has built its loggers.)
    if os.environ.get("RANK", "0") != "0":
        return []
    loggers = []
    for node in target_nodes(group):
        kwargs = {}
        if ckpt_path and node._target_.endswith("MLFlowLogger") and not node.get("run_id"):
            from recsys.tracking.mlflow import resume_run_id

            kwargs["run_id"] = resume_run_id(ckpt_path)
        loggers.append(instantiate(node, **kwargs))
    return loggers


def log_config(loggers: list[Any], cfg: DictConfig) -> None:
    """The resolved config as hyper-parameters; a resumed MLflow run only gets the new ones
    (MLflow refuses to change a logged param, and a resume changes e.g. `ckpt_path`)."""
    from lightning.pytorch.loggers import MLFlowLogger

    if not loggers:
        return
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])  # compose() keeps it
    params = OmegaConf.to_container(job, resolve=True)
    for lg in loggers:
        if cfg.get("ckpt_path") and isinstance(lg, MLFlowLogger):
            from recsys.tracking.mlflow import log_new_params

            log_new_params(lg, params)
        else:
            lg.log_hyperparams(params)
