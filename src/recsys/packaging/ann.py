"""Two-stage retrieval for large catalogues: an approximate nearest-neighbour index (faiss) over
the dot-product part of the model retrieves candidates, the full model re-ranks them exactly.

The index holds each item's retrieval vector (`RecommenderNet.retrieval_items`: MF's item
vector with its bias as one more coordinate; NeuMF's GMF vector with the head folded in, plus
the bias), so a user's retrieval vector (`retrieval_users`, with a 1 against the bias) scores
the dot-product part exactly, and the index searches by inner product itself (faiss'
METRIC_INNER_PRODUCT: on trained-like vectors it recalled more than the L2 reduction of
Bachrach et al. (2014), 1.00 against 0.94 for HNSW and 0.97 against 0.87 for IVF at equal
effort, tests/serving/test_ann.py's data). Below `min_items` (and for evaluation) every item
is scored exactly; packaging measures the two-stage recall@10 against exact top-10 on a sample
of users and refuses an index below `recall_floor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.evaluation.ranking import masked_topk
from recsys.models.base import RecommenderNet
from recsys.packaging.options import AnnOptions, IndexKind
from recsys.sparse import csr_rows

INDEX_FILE = "ann.faiss"
INFO_KEY = "ann"  # recsys.json: how the index was built and what recall it measured
RECALL_K = 10


@dataclass
class AnnIndex:
    index: Any  # faiss.Index over augmented item vectors
    info: dict[str, Any]

    @property
    def candidates(self) -> int:
        return int(self.info["candidates"])


def chosen_kind(n_items: int, options: AnnOptions) -> IndexKind:
    if options.index != IndexKind.auto:
        return options.index
    if n_items < options.min_items:
        return IndexKind.none
    return IndexKind.hnsw if n_items <= options.hnsw_max_items else IndexKind.ivf


def supports_ann(net: RecommenderNet) -> bool:
    try:
        net.retrieval_users(torch.zeros(1, dtype=torch.long))
    except NotImplementedError:
        return False
    return True


@torch.no_grad()
def build_index(net: RecommenderNet, kind: IndexKind, options: AnnOptions) -> AnnIndex:
    import faiss

    vectors = np.ascontiguousarray(net.retrieval_items().float().cpu().numpy())
    n, dim = vectors.shape
    if kind == IndexKind.hnsw:
        index = faiss.IndexHNSWFlat(dim, options.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = options.ef_construction
        index.hnsw.efSearch = options.ef_search
        params = {"m": options.hnsw_m, "ef_construction": options.ef_construction}
        index.add(vectors)
    elif kind == IndexKind.ivf:
        lists = options.ivf_lists or max(1, int(4 * math.sqrt(n)))
        lists = min(lists, n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = options.seed
        rng = np.random.default_rng(options.seed)
        sample = vectors[rng.choice(n, min(n, 64 * lists), replace=False)]
        index.train(sample)
        index.add(vectors)
        index.nprobe = min(options.nprobe, lists)
        params = {"lists": lists}
    else:
        raise ValueError(f"no index to build for kind '{kind}'")
    info = {
        "kind": kind.value,
        **params,
        "ef_search": options.ef_search,
        "nprobe": options.nprobe,
        "candidates": options.candidates,
        "items": n,
        "dim": dim,
        "faiss": faiss.__version__,
    }
    return AnnIndex(index, info)


def configure_search(ann: AnnIndex, wanted: int) -> dict[str, Any]:
    """faiss search parameters returning `wanted` neighbours (HNSW needs efSearch >= k)."""
    if ann.info["kind"] == IndexKind.hnsw:
        import faiss

        return {"params": faiss.SearchParametersHNSW(efSearch=max(ann.info["ef_search"], wanted))}
    return {}


@torch.no_grad()
def ann_topk(
    net: RecommenderNet,
    ann: AnnIndex,
    users: torch.Tensor,
    seen_rows: torch.Tensor,
    seen_items: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`masked_topk`'s answer through the index: candidates retrieved (enough to leave
    `candidates` after the batch's most-seen user loses their seen items), scored exactly by
    the full model, seen items masked, top-k kept."""
    n_items, batch = net.n_items, users.numel()
    k = min(k, n_items)
    most_seen = int(torch.bincount(seen_rows, minlength=batch).max()) if seen_rows.numel() else 0
    wanted = min(n_items, max(ann.candidates, k) + most_seen)
    queries = np.ascontiguousarray(net.retrieval_users(users).float().cpu().numpy())
    _, found = ann.index.search(queries, wanted, **configure_search(ann, wanted))
    candidates = torch.from_numpy(found).to(users.device)
    missing = candidates < 0
    candidates = candidates.clamp(min=0)
    scores = net.score(users.repeat_interleave(wanted), candidates.reshape(-1)).view(batch, wanted)
    scores = scores.float().masked_fill(missing, -torch.inf)
    if seen_rows.numel():
        seen_keys = seen_rows.long() * n_items + seen_items.long()
        rows = torch.arange(batch, device=users.device)[:, None]
        scores = scores.masked_fill(torch.isin(rows * n_items + candidates, seen_keys), -torch.inf)
    top_scores, pick = torch.topk(scores, min(k, wanted), dim=1)
    return top_scores, torch.gather(candidates, 1, pick)


def similar_candidates(ann: AnnIndex, unit: torch.Tensor, count: int) -> torch.Tensor | None:
    """The `count` items of largest inner product with an item's unit vector (its bias
    coordinate 0): candidates for cosine similarity (`recommend.similar`), longer vectors
    favoured. None when the similarity vectors are not the index's space."""
    if unit.numel() > ann.index.d:
        return None
    query = np.zeros((1, ann.index.d), np.float32)
    query[0, : unit.numel()] = unit.float().cpu().numpy()
    _, found = ann.index.search(query, count, **configure_search(ann, count))
    return torch.from_numpy(found[0][found[0] >= 0]).to(unit.device)


def measure_recall(
    net: RecommenderNet,
    ann: AnnIndex,
    indptr: torch.Tensor,
    indices: torch.Tensor,
    n_users: int,
    seed: int,
) -> float:
    """Mean |two-stage top-10 & exact top-10| / |exact top-10| over a sample of users with
    history, seen items excluded in both."""
    has_history = torch.nonzero(indptr[1:] > indptr[:-1]).flatten()
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(has_history.numel(), generator=generator)[:n_users]
    users = has_history[pick].sort().values
    hits = total = 0
    for start in range(0, users.numel(), 256):
        batch = users[start : start + 256]
        seen_rows, seen_items = csr_rows(indptr, indices, batch)
        exact_scores, exact = masked_topk(net, batch, seen_rows, seen_items, RECALL_K)
        _, approx = ann_topk(net, ann, batch, seen_rows, seen_items, RECALL_K)
        valid = exact_scores > -torch.inf
        for row in range(batch.numel()):
            truth = set(exact[row][valid[row]].tolist())
            hits += len(truth & set(approx[row].tolist()))
            total += len(truth)
    return hits / total if total else 1.0


def save_index(ann: AnnIndex, directory: Path) -> None:
    import faiss

    faiss.write_index(ann.index, str(directory / INDEX_FILE))


def load_index(directory: Path, info: dict[str, Any]) -> AnnIndex | None:
    """The bundle's index, or None when it has none."""
    if INFO_KEY not in info or not (directory / INDEX_FILE).is_file():
        return None
    import faiss

    index = faiss.read_index(str(directory / INDEX_FILE))
    ann = AnnIndex(index, dict(info[INFO_KEY]))
    if ann.info["kind"] == IndexKind.ivf:
        index.nprobe = min(int(ann.info["nprobe"]), int(ann.info["lists"]))
    return ann
