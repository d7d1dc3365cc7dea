"""The one inference path: top-k for users from a bundle (cold users get popular items) and
similar items. The BentoML service and the MLflow pyfunc answer through `recommend` / `rank`,
batch scoring through their kernel `top_items`; plain torch, testable without a server.

Known users are ranked by `recsys.evaluation.ranking.masked_topk`, the kernel validation and
`recsys-eval` use too; only the mask differs: here every item the user ever interacted with
(train, val and test), there the items seen before the evaluated split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from recsys.evaluation.ranking import masked_topk
from recsys.packaging.ann import ann_topk, similar_candidates
from recsys.packaging.bundle import Bundle
from recsys.sparse import csr_rows

POPULAR = "popular"
DEFAULT_K = 10  # items per user when a request does not say


class UnknownItem(KeyError):
    """An item id the model has never seen."""


class UntrainedItem(ValueError):
    """An item without training interactions: its vector is still the random init."""


class NoItemVectors(ValueError):
    """The model has no item embeddings (popularity), so no item-to-item similarity."""


@dataclass(frozen=True)
class Query:
    """One user's request: known users carry their index, cold users -1."""

    user_idx: int
    k: int
    exclude_seen: bool = True


@dataclass(frozen=True)
class Ranked:
    items: list[str]
    scores: list[float]
    fallback: str | None = None


def queries(bundle: Bundle, user_ids: Sequence[str], k: int, exclude_seen: bool) -> list[Query]:
    return [Query(bundle.user_index.get(u, -1), k, exclude_seen) for u in user_ids]


def recommend(
    bundle: Bundle, user_ids: Sequence[str], k: int, exclude_seen: bool = True
) -> list[Ranked]:
    """Each user's top-k item ids and scores, in order; unknown users get the popular items
    (`fallback="popular"`)."""
    return rank(bundle, queries(bundle, user_ids, k, exclude_seen))


@torch.inference_mode()
def rank(bundle: Bundle, batch: Sequence[Query]) -> list[Ranked]:
    """Answers in order. Known users are scored together (one masked top-k per exclude_seen
    flag, at the largest k asked), so a batch costs about one pass over the catalogue."""
    answers: list[Ranked | None] = [None] * len(batch)
    for exclude in (True, False):
        rows = [i for i, q in enumerate(batch) if q.user_idx >= 0 and q.exclude_seen == exclude]
        if not rows:
            continue
        users = torch.tensor([batch[i].user_idx for i in rows], device=bundle.device)
        k_max = max(batch[i].k for i in rows)
        scores, items = top_items(bundle, users, k_max, exclude)
        for i, user_scores, user_items in zip(rows, scores.tolist(), items.tolist(), strict=True):
            answers[i] = _ranked(bundle, user_items, user_scores, batch[i].k)
    for i, query in enumerate(batch):
        if answers[i] is None:  # cold user: nothing to personalise with
            answers[i] = popular(bundle, query.k)
    return answers  # type: ignore[return-value]


@torch.inference_mode()
def top_items(
    bundle: Bundle, users: torch.Tensor, k: int, exclude_seen: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k (scores, item_idx) of known users (indices on `bundle.device`), best first; a
    user with fewer than k unseen items is padded with -inf scores. Every item is scored, or
    with `bundle.retrieval == "ann"` the index's candidates (`recsys.packaging.ann`). The
    kernel under `rank` and batch scoring (`recsys.batch`)."""
    if exclude_seen:
        seen_rows, seen_items = csr_rows(bundle.seen_indptr, bundle.seen_indices, users)
    else:
        seen_rows = seen_items = users.new_empty(0)
    if bundle.retrieval == "ann" and bundle.ann is not None:
        return ann_topk(bundle.net, bundle.ann, users, seen_rows, seen_items, k)
    return masked_topk(bundle.net, users, seen_rows, seen_items, k)


def popular(bundle: Bundle, k: int) -> Ranked:
    top = bundle.popular_items[:k].tolist()
    scores = bundle.popular_counts[:k].tolist()
    return Ranked(bundle.item_ids[top].tolist(), scores, POPULAR)


@torch.inference_mode()
def similar(bundle: Bundle, item_id: str, k: int) -> Ranked:
    """The k trained items with the highest cosine similarity to `item_id` (itself excluded):
    among every item, or, when packaging found the index good enough for it
    (`ann.info["similar"] == "ann"`), among the index's candidates.

    Items without training interactions (first seen in val/test) keep random vectors: they
    are neither answered for nor returned."""
    idx = bundle.item_index.get(item_id)
    if idx is None:
        raise UnknownItem(item_id)
    if bundle.item_unit is None:
        raise NoItemVectors(str(bundle.info.get("model")))
    if not bundle.trained_items[idx]:
        raise UntrainedItem(item_id)
    via_index = bundle.ann is not None and bundle.ann.info.get("similar") == "ann"
    scores, items = cosine_top(bundle, idx, k, via_index)
    return _ranked(bundle, items.tolist(), scores.tolist(), k)


def cosine_top(
    bundle: Bundle, idx: int, k: int, via_index: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cosines, item_idx) of the k trained items nearest to item `idx`, from every item or
    from the ANN index's candidates."""
    assert bundle.item_unit is not None
    unit = bundle.item_unit[idx]
    candidates = None
    if via_index and bundle.ann is not None:
        candidates = similar_candidates(bundle.ann, unit, bundle.ann.candidates + 1)
    if candidates is None:
        candidates = torch.arange(bundle.item_unit.shape[0], device=unit.device)
    sims = bundle.item_unit[candidates] @ unit
    sims[~bundle.trained_items[candidates] | (candidates == idx)] = -torch.inf
    scores, pick = torch.topk(sims, min(k, sims.numel()))
    return scores, candidates[pick]


def similar_recall(bundle: Bundle, n_items: int, seed: int, k: int = 10) -> float:
    """Mean share of an item's exact cosine top-k that the index's candidates also give,
    over a sample of trained items (packaging records it and picks the path)."""
    trained = torch.nonzero(bundle.trained_items).flatten().cpu()
    generator = torch.Generator().manual_seed(seed)
    sample = trained[torch.randperm(trained.numel(), generator=generator)[:n_items]]
    hits = total = 0
    for idx in sample.tolist():
        exact_scores, exact = cosine_top(bundle, idx, k, via_index=False)
        _, approx = cosine_top(bundle, idx, k, via_index=True)
        truth = set(exact[exact_scores > -torch.inf].tolist())
        hits += len(truth & set(approx.tolist()))
        total += len(truth)
    return hits / total if total else 1.0


def _ranked(bundle: Bundle, items: list[int], scores: list[float], k: int) -> Ranked:
    """The first k entries, minus the -inf padding of users who have seen nearly everything."""
    kept = [(i, s) for i, s in zip(items[:k], scores[:k], strict=True) if s != -float("inf")]
    return Ranked(bundle.item_ids[[i for i, _ in kept]].tolist(), [s for _, s in kept])
