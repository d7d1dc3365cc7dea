"""The BentoML model store side of packaging: one bundle saved as a new `recsys` version."""

from __future__ import annotations

import bentoml

from recsys.serving.bundle import BundleParts, write_bundle


def save_model(parts: BundleParts, name: str = "recsys") -> str:
    """Save the bundle as a new version of model `name`; returns its tag (`name:version`).

    `bentoml.models.create` builds the version in a temporary directory and adds it to the
    store only when the block succeeds, so a failure leaves the store as it was.
    """
    info = parts.info
    metrics = {key: float(value) for key, value in info.get("metrics", {}).items()}
    labels = {
        "model": type(parts.net).__name__,
        "source": str(info.get("source_kind", "")),
        "input_sha256": str(info.get("input_sha256") or ""),
        "mlflow_run_id": str(info.get("mlflow_run_id") or ""),
        # Labels are strings (`bentoml models list` shows them); metadata keeps the numbers.
        **{key: f"{value:.6f}" for key, value in metrics.items()},
    }
    metadata = {
        "source": str(info.get("source", "")),
        "n_users": parts.net.n_users,
        "n_items": parts.net.n_items,
        **metrics,
    }
    with bentoml.models.create(name, labels=labels, metadata=metadata) as model:
        write_bundle(parts, model.path)
    return str(model.tag)
