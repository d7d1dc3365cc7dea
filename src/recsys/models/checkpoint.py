"""Rebuild a trained net from a checkpoint without Lightning and without unpickling code.

Checkpoints carry `recsys` metadata (the net's `spec()`, the dataset it was trained on) next
to the weights, all plain containers and tensors, so `torch.load(weights_only=True)` suffices.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch

from recsys.models.base import RecommenderNet

# Nets a checkpoint may name: a checkpoint is data, so it must not choose arbitrary code to run.
ALLOWED_PREFIX = "recsys.models."


class CheckpointError(ValueError):
    """The file is not a recsys checkpoint (or is damaged)."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded with `weights_only=True`; clear errors for wrong files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist or is not a file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged or foreign file
        raise CheckpointError(f"'{path}' is not a readable torch checkpoint: {err}") from err
    if not isinstance(ckpt, dict) or "recsys" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"'{path}' is a torch file but not a recsys checkpoint")
    return ckpt


def build_net(spec: dict[str, Any]) -> RecommenderNet:
    """Instantiate a net from its spec (`_target_` + arguments), allowing recsys nets only."""
    spec = dict(spec)
    target = str(spec.pop("_target_", ""))
    if not target.startswith(ALLOWED_PREFIX):
        raise CheckpointError(f"checkpoint names net class '{target}', not a recsys model")
    module_name, _, cls_name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name, None)
    except ImportError:
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, RecommenderNet)):
        raise CheckpointError(f"checkpoint names '{target}', which is not a recsys network")
    # Pretrained inits are already folded into the saved weights: do not reload them.
    spec.pop("pretrained_gmf", None)
    spec.pop("pretrained_mlp", None)
    return cls(**spec)


def net_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The net's own weights from a LightningModule state dict (keys under `net.`)."""
    if any(k.startswith("net.") for k in state_dict):
        return {k[4:]: v for k, v in state_dict.items() if k.startswith("net.")}
    return state_dict


def load_net(path: str | Path) -> tuple[RecommenderNet, dict[str, Any]]:
    """The trained net in eval mode and the checkpoint's `recsys` metadata."""
    ckpt = read_checkpoint(path)
    meta = ckpt["recsys"]
    net = build_net(meta["net"])
    net.load_state_dict(net_state(ckpt["state_dict"]))
    net.eval()
    return net, meta
