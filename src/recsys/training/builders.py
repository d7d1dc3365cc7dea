"""The DataModule, the LightningModule and callback groups from a composed config: shared by
the training run and its refit on train + val (`recsys.training.refit`)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, open_dict

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

    with open_dict(cfg):
        cfg.model.net.n_users = datamodule.n_users
        cfg.model.net.n_items = datamodule.n_items
    try:
        net = instantiate(cfg.model.net)
    except Exception as err:  # pretrained checkpoints or bad sizes: a user error with a cause
        cause = err.__cause__ or err
        raise RecsysError(f"cannot build model {cfg.model.net._target_}: {cause}") from err
    return instantiate(cfg.model, net=net)
