"""Where a bundle comes from: a training checkpoint plus the processed directory it was trained
on (its parts, written by `write_bundle`), or a registered MLflow version (`models:/recsys/N`),
which already carries a written bundle."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from recsys.data.evalsets import known_interactions
from recsys.data.processed import ProcessedData, load_processed
from recsys.errors import RecsysError
from recsys.models.checkpoint import CheckpointError, load_net
from recsys.packaging.bundle import MLFLOW_ARTIFACT, BundleParts


def from_checkpoint(
    ckpt_path: str, processed_dir: str | None = None, data: ProcessedData | None = None
) -> BundleParts:
    """The checkpoint's net with the id maps and interactions of the data it was trained on
    (`data`: that directory already loaded, as the training run has it)."""
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
    if data is None or data.path != Path(processed_dir):
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


def fetch_registered(model_uri: str, dst: str | Path) -> Path:
    """Download a registered version (see `recsys.tracking.mlflow.register_model`) into
    `dst`; returns the directory of its bundle."""
    import mlflow
    from mlflow.models import Model

    if not model_uri.startswith("models:/"):
        raise RecsysError(f"model_uri must look like models:/NAME/VERSION, got '{model_uri}'")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # a bar per file
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))
    except Exception as err:  # MLflow raises several types for unknown names/versions/stores
        raise RecsysError(
            f"cannot fetch '{model_uri}' from MLflow at {mlflow.get_tracking_uri()} "
            f"(set MLFLOW_TRACKING_URI to the store it is registered in): {err}"
        ) from err
    pyfunc = Model.load(str(local)).flavors.get("python_function", {})
    artifact = pyfunc.get("artifacts", {}).get(MLFLOW_ARTIFACT)
    if artifact is None:
        raise RecsysError(
            f"'{model_uri}' holds no recsys bundle (registered by another tool, or by an earlier "
            "recsys): register it again with recsys-train"
        )
    return local / artifact["path"]


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
