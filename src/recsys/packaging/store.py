"""The BentoML model store side of packaging: one bundle saved as a new `recsys` version."""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bentoml

from recsys.errors import RecsysError
from recsys.packaging.ann import (
    INFO_KEY,
    build_index,
    chosen_kind,
    measure_recall,
    save_index,
    supports_ann,
)
from recsys.packaging.bundle import (
    BundleParts,
    copy_bundle,
    load_bundle,
    read_info,
    write_bundle,
    write_info,
)
from recsys.packaging.locate import resolve_registered
from recsys.packaging.options import AnnOptions, IndexKind
from recsys.packaging.recommend import similar_recall
from recsys.packaging.sources import fetch_registered, from_checkpoint


def package(
    ckpt_path: str | None,
    model_uri: str | None,
    processed_dir: str | None,
    name: str = "recsys",
    retrieval: AnnOptions | None = None,
) -> str:
    """A new version of `name` from exactly one source: a checkpoint (its bundle written from
    the checkpoint and its processed directory) or a registered version (its bundle copied),
    with an ANN index added for large catalogues (`retrieval`, see `add_ann_index`)."""
    if (ckpt_path is None) == (model_uri is None):
        raise RecsysError(
            "pass exactly one of ckpt_path=FILE (a recsys-train checkpoint) or "
            "model_uri=models:/recsys/N (a registered MLflow model version)"
        )
    if ckpt_path is not None:
        return save_parts(from_checkpoint(ckpt_path, processed_dir), name, retrieval)
    with tempfile.TemporaryDirectory() as tmp:
        uri = resolve_registered(str(model_uri))  # an alias as the version it points at now
        bundle = fetch_registered(uri, tmp)
        return save_copy(bundle, {"source_kind": "mlflow", "source": uri}, name, retrieval)


def save_parts(
    parts: BundleParts, name: str = "recsys", retrieval: AnnOptions | None = None
) -> str:
    """Write the parts as a bundle into a new version of model `name`; returns its tag."""
    return _save(name, lambda target: write_bundle(parts, target), retrieval)


def save_copy(
    bundle_dir: str | Path,
    info: dict[str, Any],
    name: str = "recsys",
    retrieval: AnnOptions | None = None,
) -> str:
    """Copy a written bundle (with `info` merged) into a new version of `name`; returns its tag."""
    return _save(name, lambda target: copy_bundle(bundle_dir, target, info), retrieval)


def add_ann_index(bundle_dir: Path, options: AnnOptions) -> dict[str, Any] | None:
    """Build the two-stage retrieval index into a written bundle when its catalogue calls for
    one (`recsys.packaging.ann`), after checking its recall@10 against exact top-10 on a
    sample of users; returns what recsys.json now records of it (None: exact scoring)."""
    info = read_info(bundle_dir)
    if INFO_KEY in info:
        return info[INFO_KEY]  # copied with its index
    bundle = load_bundle(bundle_dir, "cpu", retrieval="exact")
    kind = chosen_kind(bundle.net.n_items, options)
    if kind == IndexKind.none:
        return None
    if not supports_ann(bundle.net):
        if options.index == IndexKind.auto:
            return None  # e.g. EASE, MLP: nothing to index, so exact scoring
        raise RecsysError(
            f"retrieval.index={options.index}: a {info['model']} has no dot-product part to "
            "index (MF, GMF and NeuMF do); use retrieval.index=auto or none"
        )
    clock = time.perf_counter()
    ann = build_index(bundle.net, kind, options)
    built_s = time.perf_counter() - clock
    recall = measure_recall(
        bundle.net,
        ann,
        bundle.seen_indptr,
        bundle.seen_indices,
        options.recall_users,
        options.seed,
    )
    if recall < options.recall_floor:
        knob = "retrieval.ef_search" if kind == IndexKind.hnsw else "retrieval.nprobe"
        raise RecsysError(
            f"the {kind} index's two-stage recall@10 against exact top-10 is {recall:.3f} on "
            f"{options.recall_users} users, below retrieval.recall_floor={options.recall_floor}: "
            f"raise retrieval.candidates (now {options.candidates}) or {knob} (now "
            f"{options.ef_search if kind == IndexKind.hnsw else options.nprobe}), or serve "
            "exactly with retrieval.index=none"
        )
    ann.info.update(
        recall_at_10=round(recall, 4),
        recall_users=options.recall_users,
        build_s=round(built_s, 1),
    )
    if bundle.item_unit is not None:  # /similar_items: the index too, when it recalls enough
        bundle = dataclasses.replace(bundle, ann=ann, retrieval="ann")
        similar = similar_recall(bundle, options.recall_users, options.seed)
        ann.info.update(
            similar="ann" if similar >= options.recall_floor else "exact",
            similar_recall_at_10=round(similar, 4),
        )
    save_index(ann, bundle_dir)
    write_info(bundle_dir, {**info, INFO_KEY: ann.info})
    similar = ann.info.get("similar_recall_at_10")
    print(
        f"ANN index: {kind} over {bundle.net.n_items:,} items, {ann.candidates} candidates, "
        f"two-stage recall@10 {recall:.3f} on {options.recall_users:,} users"
        + ("" if similar is None else f"; similar items {similar:.3f} ({ann.info['similar']})"),
        file=sys.stderr,
    )
    return ann.info


def _save(name: str, write: Callable[[Path], dict[str, Any]], retrieval: AnnOptions | None) -> str:
    """`bentoml.models.create` builds the version in a temporary directory and adds it to the
    store only when the block succeeds, so a failure leaves the store as it was."""
    with bentoml.models.create(name) as model:
        info = write(Path(model.path))
        add_ann_index(Path(model.path), retrieval or AnnOptions())
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
