"""Every config composes, and config mistakes fail with Hydra's clear errors."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recsys.config import CONFIG_DIR
from tests.training.compose import compose_config

GROUPS = {
    group: sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
    for group in ("model", "trainer", "logger", "callbacks", "experiment", "debug")
}


def test_groups_hold_what_the_spec_names():
    assert {"gmf", "mlp", "neumf", "mf", "pop"} <= set(GROUPS["model"])
    assert {"cpu", "gpu", "ddp", "ddp_cpu"} <= set(GROUPS["trainer"])
    assert {"mlflow", "csv", "none"} <= set(GROUPS["logger"])


@pytest.mark.parametrize(
    "group", ["model", "trainer", "logger", "callbacks", "experiment", "debug"]
)
def test_every_option_composes_and_resolves(group, tmp_path):
    for option in GROUPS[group]:
        cfg = compose_config("train", ["data.processed_dir=/data", f"{group}={option}"], tmp_path)
        # Resolves (interpolations valid); ??? is allowed only where the user must fill it in.
        job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])  # hydra: needs a job
        OmegaConf.to_container(job, resolve=True, throw_on_missing=False)
        assert cfg.model.net._target_.startswith("recsys.models.")


def test_hparams_search_composes(tmp_path):
    cfg = compose_config(
        "train", ["data.processed_dir=/d", "hparams_search=neumf_optuna"], tmp_path
    )
    assert cfg.hydra.sweeper.direction == "maximize"
    assert cfg.optimized_metric == "val/ndcg@10"


@pytest.mark.parametrize("name", ["cpu", "ddp_cpu"])
def test_trainer_instantiates(name, tmp_path):
    cfg = compose_config("train", ["data.processed_dir=/d", f"trainer={name}"], tmp_path)
    trainer = instantiate(cfg.trainer, logger=False, enable_progress_bar=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs


def test_callbacks_and_optimizer_instantiate(tmp_path):
    import torch

    from recsys.training.builders import instantiate_group

    cfg = compose_config("train", ["data.processed_dir=/d"], tmp_path)
    names = {type(cb).__name__ for cb in instantiate_group(cfg.callbacks)}
    assert {"ModelCheckpoint", "EarlyStopping", "RichProgressBar"} <= names
    optimizer = instantiate(cfg.model.optimizer)  # a _partial_: the module supplies params
    assert isinstance(optimizer(params=[torch.nn.Parameter(torch.zeros(1))]), torch.optim.Adam)


def test_eval_config_defaults(tmp_path):
    cfg = compose_config(
        "eval", ["ckpt_path=x", "data.processed_dir=d", "eval.output_dir=o"], tmp_path
    )
    assert list(cfg.eval.k) == [10, 20] and cfg.eval.protocol == "full"


@pytest.mark.parametrize(
    "override",
    [
        "model=nope",
        "trainer=tpu",
        "model.lr_scaling=cubic",
        "model.loss=hinge",
        "eval.protocol=loo",
    ],
)
def test_config_mistakes_are_refused(override, tmp_path):
    name = "eval" if override.startswith("eval.") else "train"
    with pytest.raises(ConfigCompositionException):
        compose_config(name, ["data.processed_dir=/d", override], tmp_path)
