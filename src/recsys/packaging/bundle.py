"""The one recsys model artifact: written by `write_bundle`, read by `load_bundle`.

The registered MLflow model carries it as its artifact, `recsys-package` puts it in the
BentoML model store (copied, not rebuilt, from a registered version), and every inference
path (the service, the MLflow pyfunc) answers from it through `recsys.packaging.recommend`.

A bundle is a directory of plain data: JSON, parquet and tensors loaded with
`torch.load(weights_only=True)`, so serving never unpickles code. It holds only what serving
needs: the net (spec + weights), id maps, each user's seen items (CSR), the popularity ranking
for cold start, item-side tensors precomputed for full-catalogue scoring and unit item vectors
for similarity.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.models.base import RecommenderNet
from recsys.models.checkpoint import CheckpointError, build_net
from recsys.packaging.ann import AnnIndex, load_index

FORMAT_VERSION = 1
# The bundle's name as an artifact of the registered MLflow model.
MLFLOW_ARTIFACT = "bundle"
INFO_FILE = "recsys.json"
WEIGHTS_FILE = "weights.pt"
ITEM_SIDE_FILE = "item_side.pt"
SEEN_FILE = "seen.pt"
POPULAR_FILE = "popular.pt"
USERS_FILE = "users.parquet"
ITEMS_FILE = "items.parquet"


@dataclass(frozen=True)
class BundleParts:
    """Everything a bundle is made of, whatever the source (checkpoint or MLflow model)."""

    net: RecommenderNet
    user_ids: list[str]  # by user_idx
    item_ids: list[str]  # by item_idx
    seen_indptr: torch.Tensor  # CSR over users: items known from any split
    seen_indices: torch.Tensor
    popularity: torch.Tensor  # train interactions per item
    info: dict[str, Any]  # provenance and test metrics (MLflow run, input_sha256, ...)


def write_bundle(parts: BundleParts, target: str | Path) -> dict[str, Any]:
    """Write the bundle files into `target` (an empty directory); returns the info written."""
    target, net = Path(target), parts.net.eval()
    if len(parts.user_ids) != net.n_users or len(parts.item_ids) != net.n_items:
        raise CheckpointError(
            f"id maps have {len(parts.user_ids)} users x {len(parts.item_ids)} items but the "
            f"model was trained on {net.n_users} x {net.n_items}: wrong processed directory?"
        )
    with torch.no_grad():
        item_side = {name: t.detach().contiguous() for name, t in net.item_side().items()}
        try:
            vectors = net.item_embeddings().detach()
            item_side["similarity"] = torch.nn.functional.normalize(vectors, dim=1).contiguous()
        except NotImplementedError:  # e.g. popularity: no item vectors, no /similar_items
            pass
    torch.save(net.state_dict(), target / WEIGHTS_FILE)
    torch.save(item_side, target / ITEM_SIDE_FILE)
    # int32 items: half the size of int64 for the largest array of the bundle.
    seen = {"indptr": parts.seen_indptr.long(), "indices": parts.seen_indices.int()}
    torch.save(seen, target / SEEN_FILE)
    counts = parts.popularity.float()
    order = torch.argsort(counts, descending=True, stable=True)
    torch.save({"items": order.int(), "counts": counts[order]}, target / POPULAR_FILE)
    pl.DataFrame({"user_id": parts.user_ids}, schema={"user_id": pl.String}).write_parquet(
        target / USERS_FILE
    )
    pl.DataFrame({"item_id": parts.item_ids}, schema={"item_id": pl.String}).write_parquet(
        target / ITEMS_FILE
    )
    info = {
        "format_version": FORMAT_VERSION,
        "net": net.spec(),
        "model": type(net).__name__,
        "n_users": net.n_users,
        "n_items": net.n_items,
        "similarity": "similarity" in item_side,
        **parts.info,
    }
    write_info(target, info)
    return info


def write_info(target: str | Path, info: dict[str, Any]) -> None:
    (Path(target) / INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True))


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: the net ready for scoring plus the lookups requests need."""

    net: RecommenderNet
    info: dict[str, Any]
    user_index: dict[str, int]  # users with history only: the rest are cold
    item_index: dict[str, int]
    item_ids: np.ndarray  # item_id by item_idx
    seen_indptr: torch.Tensor
    seen_indices: torch.Tensor
    popular_items: torch.Tensor  # every item, most popular first
    popular_counts: torch.Tensor
    trained_items: torch.Tensor  # bool by item_idx: has train interactions
    item_unit: torch.Tensor | None  # unit item vectors for cosine similarity
    device: torch.device  # where the net and the scoring tensors live
    ann: AnnIndex | None = None  # the two-stage retrieval index, when packaging built one
    retrieval: str = "exact"  # how known users are ranked: exact, or ann (through `ann`)


def load_bundle(
    path: str | Path, device: str | torch.device = "cpu", retrieval: str = "auto"
) -> Bundle:
    """Read a bundle written by `write_bundle` (weights_only loads throughout); the scoring
    tensors go to `device`, the id lookups stay in host memory. `retrieval`: exact, ann
    (the bundle must hold an index) or auto (ann when it does)."""
    path, device = Path(path), torch.device(device)
    info = read_info(path)
    ann = load_index(path, info) if retrieval != "exact" else None
    if retrieval == "ann" and ann is None:
        raise CheckpointError(
            f"retrieval=ann, but the model in '{path}' has no ANN index: recsys-package builds "
            "one for catalogues of retrieval.min_items items or more (retrieval.index=hnsw or "
            "ivf forces it); or use retrieval=exact"
        )
    if retrieval not in ("auto", "exact", "ann"):
        raise ValueError(f"retrieval must be auto, exact or ann, got '{retrieval}'")
    net = build_net(info["net"])
    net.load_state_dict(_load(path / WEIGHTS_FILE))
    net.eval().requires_grad_(False).to(device)
    item_side = {name: t.to(device) for name, t in _load(path / ITEM_SIDE_FILE).items()}
    item_unit = item_side.pop("similarity", None)
    net.use_item_side(item_side)
    seen, popular = _load(path / SEEN_FILE), _load(path / POPULAR_FILE)
    indptr = seen["indptr"]
    users = pl.read_parquet(path / USERS_FILE)["user_id"]
    # A user without any interaction kept an untrained embedding: serve them as cold.
    has_history = (indptr[1:] > indptr[:-1]).numpy()
    known_users = users.filter(pl.Series(has_history))
    user_idx = np.flatnonzero(has_history)
    item_ids = pl.read_parquet(path / ITEMS_FILE)["item_id"].to_numpy()
    popular_items = popular["items"].long()
    trained_items = torch.zeros(len(item_ids), dtype=torch.bool)
    trained_items[popular_items[popular["counts"] > 0]] = True
    device_of: dict[str, torch.Tensor] = {
        "seen_indptr": indptr.to(device),
        "seen_indices": seen["indices"].long().to(device),
        "trained_items": trained_items.to(device),
    }
    return Bundle(
        net=net,
        info=info,
        user_index=dict(zip(known_users.to_list(), user_idx.tolist(), strict=True)),
        item_index={item_id: idx for idx, item_id in enumerate(item_ids.tolist())},
        item_ids=item_ids,
        popular_items=popular_items,
        popular_counts=popular["counts"],
        item_unit=item_unit,
        device=device,
        ann=ann,
        retrieval="ann" if ann is not None else "exact",
        **device_of,
    )


def read_info(path: str | Path) -> dict[str, Any]:
    """The bundle's recsys.json, refused unless this recsys reads its format."""
    path = Path(path)
    try:
        info = json.loads((path / INFO_FILE).read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"'{path}' holds no {INFO_FILE}: not a recsys bundle") from err
    if info.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"'{path}' is bundle format {info.get('format_version')}; this recsys reads "
            f"{FORMAT_VERSION}: package the model again with this version"
        )
    return info


def copy_bundle(source: str | Path, target: str | Path, info: dict[str, Any]) -> dict[str, Any]:
    """Copy a written bundle into `target` byte for byte, with `info` merged into its
    recsys.json (where it now comes from); returns the info written."""
    source, target = Path(source), Path(target)
    merged = {**read_info(source), **info}
    shutil.copytree(source, target, dirs_exist_ok=True)
    write_info(target, merged)
    return merged


def _load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)
