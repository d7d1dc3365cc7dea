"""The BentoML model store side of packaging: one bundle saved as a new `recsys` version."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bentoml

from recsys.errors import RecsysError
from recsys.packaging.bundle import BundleParts, copy_bundle, write_bundle
from recsys.packaging.sources import fetch_registered, from_checkpoint


def package(
    ckpt_path: str | None, model_uri: str | None, processed_dir: str | None, name: str = "recsys"
) -> str:
    """A new version of `name` from exactly one source: a checkpoint (its bundle written from
    the checkpoint and its processed directory) or a registered version (its bundle copied)."""
    if (ckpt_path is None) == (model_uri is None):
        raise RecsysError(
            "pass exactly one of ckpt_path=FILE (a recsys-train checkpoint) or "
            "model_uri=models:/recsys/N (a registered MLflow model version)"
        )
    if ckpt_path is not None:
        return save_parts(from_checkpoint(ckpt_path, processed_dir), name)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = fetch_registered(str(model_uri), tmp)
        return save_copy(bundle, {"source_kind": "mlflow", "source": model_uri}, name)


def save_parts(parts: BundleParts, name: str = "recsys") -> str:
    """Write the parts as a bundle into a new version of model `name`; returns its tag."""
    return _save(name, lambda target: write_bundle(parts, target))


def save_copy(bundle_dir: str | Path, info: dict[str, Any], name: str = "recsys") -> str:
    """Copy a written bundle (with `info` merged) into a new version of `name`; returns its tag."""
    return _save(name, lambda target: copy_bundle(bundle_dir, target, info))


def _save(name: str, write: Callable[[Path], dict[str, Any]]) -> str:
    """`bentoml.models.create` builds the version in a temporary directory and adds it to the
    store only when the block succeeds, so a failure leaves the store as it was."""
    with bentoml.models.create(name) as model:
        info = write(Path(model.path))
        metrics = {key: float(value) for key, value in info.get("metrics", {}).items()}
        model.info.labels.update(
            {
                "model": str(info["model"]),
                "source": str(info.get("source_kind", "")),
                "input_sha256": str(info.get("input_sha256") or ""),
                "mlflow_run_id": str(info.get("mlflow_run_id") or ""),
                # Labels are strings (`bentoml models list` shows them); metadata keeps numbers.
                **{key: f"{value:.6f}" for key, value in metrics.items()},
            }
        )
        model.info.metadata.update(
            {
                "source": str(info.get("source", "")),
                "n_users": int(info["n_users"]),
                "n_items": int(info["n_items"]),
                **metrics,
            }
        )
    return str(model.tag)
