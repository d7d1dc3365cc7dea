"""Where `recsys-package` gets a model from: a training checkpoint plus its processed directory,
or a registered MLflow model version (`models:/recsys/N`), which carries the same parts."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import torch
import yaml

from recsys.data.evalsets import known_interactions
from recsys.data.processed import load_processed
from recsys.errors import RecsysError
from recsys.models.checkpoint import CheckpointError, load_net
from recsys.serving.bundle import BundleParts

log = logging.getLogger(__name__)


def from_checkpoint(ckpt_path: str, processed_dir: str | None = None) -> BundleParts:
    """The checkpoint's net with the id maps and interactions of the data it was trained on."""
    try:
        net, meta = load_net(ckpt_path)
    except CheckpointError as err:
        raise RecsysError(str(err), path=ckpt_path) from err
    trained_on = meta.get("data", {})
    processed_dir = processed_dir or trained_on.get("processed_dir")
    if not processed_dir:
        raise RecsysError(
            "the checkpoint does not record its processed directory: pass data.processed_dir=DIR",
            path=ckpt_path,
        )
    data = load_processed(processed_dir)
    if (net.n_users, net.n_items) != (data.n_users, data.n_items):
        raise RecsysError(
            f"the checkpoint was trained on {net.n_users} users x {net.n_items} items, "
            f"'{processed_dir}' has {data.n_users} x {data.n_items} (other preprocessing "
            "settings?): pass the processed directory it was trained on as data.processed_dir",
            path=ckpt_path,
        )
    expected, found = trained_on.get("input_sha256"), data.metadata.get("input_sha256")
    if expected and found and expected != found:
        raise RecsysError(
            f"the checkpoint was trained on input sha256 {expected[:12]}..., but "
            f"'{processed_dir}' was built from {found[:12]}...: its id maps would not match. "
            "Pass the processed directory it was trained on as data.processed_dir=DIR",
            path=ckpt_path,
        )
    known = known_interactions(data)
    # The run's metrics.json tests best.ckpt: it describes no other checkpoint of the run.
    ckpt = Path(ckpt_path).resolve()
    run_metrics = ckpt.parent.parent / "metrics.json" if ckpt.name == "best.ckpt" else None
    return BundleParts(
        net=net,
        user_ids=ids_in_order(data.path / "users.parquet", "user"),
        item_ids=ids_in_order(data.path / "items.parquet", "item"),
        seen_indptr=known["indptr"],
        seen_indices=known["indices"],
        popularity=known["popularity"],
        info={
            "source_kind": "checkpoint",
            "source": str(ckpt),
            "mlflow_run_id": meta.get("mlflow_run_id"),
            "input_sha256": found or expected,
            "metrics": _test_metrics(run_metrics) if run_metrics and run_metrics.is_file() else {},
        },
    )


def from_model_uri(model_uri: str) -> BundleParts:
    """A registered pyfunc version (see `recsys.tracking.mlflow.register_model`)."""
    import mlflow

    if not model_uri.startswith("models:/"):
        raise RecsysError(f"model_uri must look like models:/NAME/VERSION, got '{model_uri}'")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp))
        except Exception as err:  # MLflow raises several types for unknown names/versions/stores
            raise RecsysError(
                f"cannot fetch '{model_uri}' from MLflow at {mlflow.get_tracking_uri()} "
                f"(set MLFLOW_TRACKING_URI to the store it is registered in): {err}"
            ) from err
        mlmodel = yaml.safe_load((local / "MLmodel").read_text())
        artifacts = mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts", {})
        missing = {"weights", "interactions", "users", "items"} - set(artifacts)
        if missing:
            raise RecsysError(
                f"'{model_uri}' is not a recsys model (no artifacts {sorted(missing)})"
            )
        paths = {name: local / entry["path"] for name, entry in artifacts.items()}
        try:
            net, meta = load_net(paths["weights"])
        except CheckpointError as err:
            raise RecsysError(str(err), path=model_uri) from err
        known = torch.load(paths["interactions"], map_location="cpu", weights_only=True)
        run_id = mlmodel.get("run_id") or meta.get("mlflow_run_id")
        return BundleParts(
            net=net,
            user_ids=ids_in_order(paths["users"], "user"),
            item_ids=ids_in_order(paths["items"], "item"),
            seen_indptr=known["indptr"],
            seen_indices=known["indices"],
            popularity=known["popularity"],
            info={
                "source_kind": "mlflow",
                "source": model_uri,
                "mlflow_run_id": run_id,
                "input_sha256": meta.get("data", {}).get("input_sha256"),
                "metrics": _run_test_metrics(run_id, tmp) if run_id else {},
            },
        )


def ids_in_order(path: Path, kind: str) -> list[str]:
    """Ids in index order, checked to be the contiguous 0..n-1 the model's rows are."""
    frame = pl.read_parquet(path, columns=[f"{kind}_idx", f"{kind}_id"]).sort(f"{kind}_idx")
    index = frame[f"{kind}_idx"]
    if index.len() and (
        index[0] != 0 or index[-1] != index.len() - 1 or index.n_unique() != index.len()
    ):
        raise RecsysError(f"{kind}_idx is not contiguous from 0", path=path)
    return frame[f"{kind}_id"].to_list()


def _test_metrics(path: Path) -> dict[str, Any]:
    metrics = json.loads(path.read_text())
    return {key: value for key, value in metrics.items() if key.startswith("test/")}


def _run_test_metrics(run_id: str, tmp: str) -> dict[str, Any]:
    """The run's metrics.json artifact (metric names keep their '@', unlike MLflow's)."""
    import mlflow

    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="metrics.json", dst_path=tmp
        )
    except Exception as err:  # a run without the artifact (test=false) still packages
        log.warning("no test metrics from MLflow run %s: %s", run_id, err)
        return {}
    return _test_metrics(Path(path))
