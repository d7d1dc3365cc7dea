"""Two-stage retrieval: the index vectors are the score's dot-product part, the index recalls
exact top-10 on a large enough catalogue, re-ranking is exact and never returns seen items,
packaging refuses an index below the recall floor, and every path can be made exact."""

from __future__ import annotations

import dataclasses

import bentoml
import pytest
import torch

from recsys.errors import RecsysError
from recsys.models import IALS
from recsys.models.checkpoint import CheckpointError
from recsys.models.mf import MF
from recsys.models.ncf import GMF, MLP, NeuMF
from recsys.packaging.ann import AnnIndex, ann_topk, build_index, measure_recall
from recsys.packaging.bundle import BundleParts, load_bundle, write_bundle
from recsys.packaging.options import AnnOptions, IndexKind
from recsys.packaging.recommend import recommend, top_items
from recsys.packaging.store import save_parts
from recsys.sparse import csr_rows

N_USERS, N_ITEMS, DIM = 600, 4000, 16


def trained_like(net):
    """Random weights with trained-model structure: item vectors of varied norms (popular
    items long) and biases, so inner-product search is not trivially easy."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if "item" in name and param.dim() == 2:
                scale = torch.rand(param.shape[0], 1, generator=g) * 2
                param.copy_(torch.randn(param.shape, generator=g) * scale)
            elif "bias" in name and param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=g) * 0.5)
            else:
                param.copy_(torch.randn(param.shape, generator=g) * 0.3)
    return net.eval()


def seen(n_users=N_USERS, n_items=N_ITEMS, per_user=12):
    g = torch.Generator().manual_seed(2)
    items = torch.stack([torch.randperm(n_items, generator=g)[:per_user] for _ in range(n_users)])
    items = items.sort(dim=1).values.reshape(-1)
    indptr = torch.arange(0, n_users * per_user + 1, per_user)
    return indptr, items


@pytest.mark.parametrize(
    "net",
    [
        MF(N_USERS, N_ITEMS, DIM),
        MF(N_USERS, N_ITEMS, DIM, item_bias=False),
        IALS(N_USERS, N_ITEMS, DIM),
        GMF(N_USERS, N_ITEMS, DIM),
        NeuMF(N_USERS, N_ITEMS, gmf_dim=DIM, mlp_dim=8, layers=[16, 8]),
    ],
    ids=lambda net: type(net).__name__ + ("" if getattr(net, "bias", 1) is not None else "-nb"),
)
def test_retrieval_vectors_are_the_dot_product_part_of_the_score(net):
    net = trained_like(net)
    users = torch.arange(0, N_USERS, 37)
    with torch.no_grad():
        dot = net.retrieval_users(users) @ net.retrieval_items().T
        if isinstance(net, NeuMF):
            net.mlp_head.zero_()  # what the index leaves to re-ranking
        torch.testing.assert_close(dot, net.score_items(users), rtol=1e-5, atol=1e-5)


def test_nets_without_a_dot_product_part_say_so():
    with pytest.raises(NotImplementedError):
        MLP(N_USERS, N_ITEMS).retrieval_items()


@pytest.mark.parametrize("kind", [IndexKind.hnsw, IndexKind.ivf])
@pytest.mark.parametrize("model", ["mf", "neumf"])
def test_two_stage_top_10_recalls_exact_and_reranks_exactly(kind, model):
    net = trained_like(
        MF(N_USERS, N_ITEMS, DIM)
        if model == "mf"
        else NeuMF(N_USERS, N_ITEMS, gmf_dim=DIM, mlp_dim=8, layers=[16, 8])
    )
    indptr, indices = seen()
    ann = build_index(net, kind, AnnOptions(candidates=500, ivf_lists=64, nprobe=32))
    recall = measure_recall(net, ann, indptr, indices, 300, seed=0)
    assert recall >= 0.95, recall
    users = torch.arange(0, N_USERS, 3)
    seen_rows, seen_items = csr_rows(indptr, indices, users)
    scores, items = ann_topk(net, ann, users, seen_rows, seen_items, 10)
    with torch.no_grad():  # the scores are the full model's, and no seen item comes back
        exact = net.score(users.repeat_interleave(10), items.reshape(-1)).view(-1, 10)
    torch.testing.assert_close(scores, exact, rtol=1e-5, atol=1e-5)
    for row, user in enumerate(users.tolist()):
        assert not set(items[row].tolist()) & set(indices[indptr[user] : indptr[user + 1]].tolist())
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def bundle_parts(net) -> BundleParts:
    indptr, indices = seen()
    return BundleParts(
        net=net,
        user_ids=[f"u{i}" for i in range(N_USERS)],
        item_ids=[f"i{i}" for i in range(N_ITEMS)],
        seen_indptr=indptr,
        seen_indices=indices,
        popularity=torch.bincount(indices, minlength=N_ITEMS),
        info={"source": "test"},
    )


def test_packaging_builds_the_index_and_serving_uses_it_unless_told_otherwise(tmp_path):
    parts = bundle_parts(trained_like(MF(N_USERS, N_ITEMS, DIM)))
    # Below min_items: no index, exact scoring.
    exact_tag = save_parts(parts, "recsys-ann-test")
    assert load_bundle(bentoml.models.get(exact_tag).path).ann is None
    tag = save_parts(parts, "recsys-ann-test", AnnOptions(min_items=1000, candidates=100))
    path = bentoml.models.get(tag).path
    bundle = load_bundle(path)
    assert bundle.retrieval == "ann" and bundle.ann.info["kind"] == "hnsw"
    assert bundle.ann.info["recall_at_10"] >= 0.95
    exact = load_bundle(path, retrieval="exact")
    assert exact.ann is None and exact.retrieval == "exact"
    users = [f"u{i}" for i in range(0, N_USERS, 5)]
    two_stage, full = recommend(bundle, users, 10), recommend(exact, users, 10)
    overlap = sum(len(set(a.items) & set(b.items)) for a, b in zip(two_stage, full, strict=True))
    assert overlap / (10 * len(users)) >= 0.95
    scores, _ = top_items(bundle, torch.tensor([0, 1]), 10)
    assert scores.shape == (2, 10)


def test_an_index_below_the_recall_floor_fails_packaging_and_saves_nothing():
    parts = bundle_parts(trained_like(MF(N_USERS, N_ITEMS, DIM)))

    def stored():
        return {str(m.tag) for m in bentoml.models.list() if m.tag.name == "recsys-floor-test"}

    before = stored()
    options = AnnOptions(index=IndexKind.ivf, ivf_lists=256, nprobe=1, candidates=10)
    with pytest.raises(
        RecsysError, match=r"raise retrieval.candidates \(now 10\) or retrieval.nprobe"
    ):
        save_parts(parts, "recsys-floor-test", options)
    assert stored() == before


def test_forcing_an_index_on_a_net_without_dot_products_is_refused():
    with pytest.raises(RecsysError, match="has no dot-product part"):
        save_parts(
            bundle_parts(MLP(N_USERS, N_ITEMS).eval()),
            "recsys-ann-test",
            AnnOptions(index=IndexKind.hnsw),
        )


def test_asking_for_ann_without_an_index_is_an_error(tmp_path):
    write_bundle(bundle_parts(MF(N_USERS, N_ITEMS, DIM).eval()), tmp_path)
    with pytest.raises(CheckpointError, match="has no ANN index"):
        load_bundle(tmp_path, retrieval="ann")
    assert load_bundle(tmp_path).retrieval == "exact"


def test_similar_items_search_the_index_only_when_packaging_found_it_good_enough():
    from recsys.packaging.recommend import similar

    parts = bundle_parts(trained_like(MF(N_USERS, N_ITEMS, DIM)))
    tag = save_parts(parts, "recsys-ann-test", AnnOptions(min_items=1000, candidates=300))
    bundle = load_bundle(bentoml.models.get(tag).path)
    info = bundle.ann.info
    assert info["similar"] in ("ann", "exact") and 0 <= info["similar_recall_at_10"] <= 1
    exact = load_bundle(bentoml.models.get(tag).path, retrieval="exact")
    forced = dataclasses.replace(bundle, ann=AnnIndex(bundle.ann.index, {**info, "similar": "ann"}))
    hits = 0
    trained = torch.nonzero(bundle.trained_items).flatten().tolist()
    items = [f"i{i}" for i in trained[::97]]
    for item in items:
        via_index, full = similar(forced, item, 10), similar(exact, item, 10)
        assert item not in via_index.items and len(via_index.items) == 10
        assert via_index.scores == sorted(via_index.scores, reverse=True)
        hits += len(set(via_index.items) & set(full.items))
    # Inner-product candidates favour long vectors, so they recall cosine neighbours less well
    # than users' top items: packaging measures it and keeps /similar_items exact below the floor.
    assert hits / (10 * len(items)) >= 0.6
    assert (info["similar"] == "ann") == (info["similar_recall_at_10"] >= 0.95)
