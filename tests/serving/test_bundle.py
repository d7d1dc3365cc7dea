"""The bundle round trip and the request logic, against brute force on the loaded net."""

from __future__ import annotations

import pytest
import torch

from recsys.models import EASE, IALS
from recsys.models.mf import MF
from recsys.models.ncf import GMF, MLP, NeuMF
from recsys.models.popularity import Popularity
from recsys.packaging.bundle import BundleParts, load_bundle, write_bundle
from recsys.packaging.recommend import (
    POPULAR,
    NoItemVectors,
    Query,
    UnknownItem,
    UntrainedItem,
    queries,
    rank,
    similar,
)
from recsys.sparse import csr_rows

N_USERS, N_ITEMS = 40, 30


def parts(net, empty_users=(3,)) -> BundleParts:
    """Random histories (some users without any), popularity from them."""
    g = torch.Generator().manual_seed(0)
    per_user = torch.randint(1, 8, (N_USERS,), generator=g)
    per_user[list(empty_users)] = 0
    users = torch.repeat_interleave(torch.arange(N_USERS), per_user)
    items = torch.randint(0, N_ITEMS, (users.numel(),), generator=g)
    keys = torch.unique(users * N_ITEMS + items)
    users, items = keys // N_ITEMS, keys % N_ITEMS
    indptr = torch.zeros(N_USERS + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(torch.bincount(users, minlength=N_USERS), 0)
    return BundleParts(
        net=net,
        user_ids=[f"u{i}" for i in range(N_USERS)],
        item_ids=[f"i{i}" for i in range(N_ITEMS)],
        seen_indptr=indptr,
        seen_indices=items,
        popularity=torch.bincount(items, minlength=N_ITEMS),
        info={"source": "test", "metrics": {"test/ndcg@10": 0.5}},
    )


def nets():
    torch.manual_seed(0)
    neumf = NeuMF(N_USERS, N_ITEMS, gmf_dim=8, mlp_dim=4, layers=[8, 4])
    with torch.no_grad():  # a trained-looking head and bias, not the all-ones/zeros init
        neumf.gmf_head.normal_()
        neumf.mlp_head.normal_()
        neumf.bias.weight.normal_()
    gmf = GMF(N_USERS, N_ITEMS, embedding_dim=8)
    with torch.no_grad():
        gmf.head.weight.normal_()
    g = torch.Generator().manual_seed(1)
    users, items = (
        torch.randint(N_USERS, (150,), generator=g),
        torch.randint(N_ITEMS, (150,), generator=g),
    )
    ease, ials = EASE(N_USERS, N_ITEMS, l2_reg=1.0), IALS(N_USERS, N_ITEMS, embedding_dim=6)
    for solved in (ease, ials, ials):
        solved.solve(users, items)
    mlp = MLP(N_USERS, N_ITEMS, embedding_dim=4, layers=[8, 4])
    return [neumf, gmf, mlp, MF(N_USERS, N_ITEMS), ease, ials]


@pytest.fixture(params=nets(), ids=lambda net: type(net).__name__)
def bundle_and_net(request, tmp_path):
    net = request.param.eval()
    source = parts(net)
    write_bundle(source, tmp_path)
    return load_bundle(tmp_path), net, source


def test_precomputed_item_side_scores_like_the_raw_weights(bundle_and_net):
    bundle, net, _ = bundle_and_net
    users = torch.arange(N_USERS)
    with torch.no_grad():
        expected = net.score_items(users)
        assert torch.allclose(bundle.net.score_items(users), expected, atol=1e-5)
        assert torch.allclose(bundle.net.score_items(users, 5, 17), expected[:, 5:17], atol=1e-5)
    if not isinstance(net, MF | EASE):  # these score from raw weights: nothing to precompute
        assert bundle.net.frozen_items


def test_rank_is_the_top_k_unseen_items_of_brute_force_scores(bundle_and_net):
    bundle, net, source = bundle_and_net
    known = [u for u in range(N_USERS) if u != 3]
    ids = [f"u{u}" for u in known] + ["u3", "nobody"]
    answers = rank(bundle, queries(bundle, ids, 5, exclude_seen=True))
    with torch.no_grad():
        scores = net.score_items(torch.tensor(known))
    rows, cols = csr_rows(source.seen_indptr, source.seen_indices, torch.tensor(known))
    scores[rows, cols] = -torch.inf
    top = torch.topk(scores, 5, dim=1)
    for row, answer in enumerate(answers[: len(known)]):
        assert answer.fallback is None
        assert answer.items == [f"i{i}" for i in top.indices[row].tolist()]
        assert answer.scores == pytest.approx(top.values[row].tolist(), abs=1e-5)
    popular = torch.argsort(source.popularity, descending=True, stable=True)
    # A user without history and an unknown user both get the popularity ranking.
    for answer in answers[-2:]:
        assert answer.fallback == POPULAR
        assert answer.items == [f"i{i}" for i in popular[:5].tolist()]
    assert bundle.user_index.get("u3") is None and bundle.user_index["u7"] == 7


def test_exclude_seen_false_ranks_everything_and_k_beyond_the_catalogue_is_cut(bundle_and_net):
    bundle, _, source = bundle_and_net
    (everything,) = rank(bundle, [Query(0, 1000, exclude_seen=False)])
    assert len(everything.items) == N_ITEMS
    (unseen,) = rank(bundle, [Query(0, 1000)])
    n_seen = int(source.seen_indptr[1] - source.seen_indptr[0])
    assert len(unseen.items) == N_ITEMS - n_seen  # no -inf padding reaches a client
    seen = {f"i{i}" for i in source.seen_indices[:n_seen].tolist()}
    assert not seen & set(unseen.items) and seen <= set(everything.items)


def test_mixed_k_and_flags_in_one_batch_answer_like_single_requests(bundle_and_net):
    bundle, _, _ = bundle_and_net
    batch = [Query(1, 3), Query(2, 7, exclude_seen=False), Query(-1, 2), Query(5, 1)]
    together = rank(bundle, batch)
    alone = [rank(bundle, [q])[0] for q in batch]
    for a, b in zip(together, alone, strict=True):
        assert a.items == b.items and a.scores == pytest.approx(b.scores, abs=1e-6)


def test_similar_items_by_cosine_among_trained_items(bundle_and_net):
    bundle, net, source = bundle_and_net
    trained = source.popularity > 0
    query = int(torch.nonzero(trained)[0])
    answer = similar(bundle, f"i{query}", 6)
    vectors = torch.nn.functional.normalize(net.item_embeddings().detach(), dim=1)
    sims = vectors @ vectors[query]
    sims[~trained] = -torch.inf
    sims[query] = -torch.inf
    top = torch.topk(sims, 6)
    assert answer.items == [f"i{i}" for i in top.indices.tolist()]
    assert answer.scores == pytest.approx(top.values.tolist(), abs=1e-5)
    assert len(similar(bundle, f"i{query}", 1000).items) == int(trained.sum()) - 1
    with pytest.raises(UnknownItem):
        similar(bundle, "nope", 3)


def test_items_without_training_interactions_have_no_similar_items(tmp_path):
    source = parts(MF(N_USERS, N_ITEMS))
    popularity = source.popularity.clone()
    popularity[7] = 0  # e.g. an item first seen in the test period
    write_bundle(BundleParts(**{**source.__dict__, "popularity": popularity}), tmp_path)
    bundle = load_bundle(tmp_path)
    with pytest.raises(UntrainedItem):
        similar(bundle, "i7", 3)
    assert "i7" not in similar(bundle, "i1", 1000).items


def test_bundle_records_provenance_and_loads_without_pickles(tmp_path):
    net = NeuMF(N_USERS, N_ITEMS, gmf_dim=8, mlp_dim=4, layers=[8, 4])
    info = write_bundle(parts(net), tmp_path)
    assert info["model"] == "NeuMF" and info["metrics"] == {"test/ndcg@10": 0.5}
    assert info["n_users"] == N_USERS and info["similarity"] is True
    for tensor_file in tmp_path.glob("*.pt"):
        torch.load(tensor_file, weights_only=True)  # plain tensors and containers only


def test_popularity_bundle_serves_but_has_no_similar_items(tmp_path):
    pop = Popularity(N_USERS, N_ITEMS)
    source = parts(pop)
    pop.fit(source.seen_indices)
    write_bundle(source, tmp_path)
    bundle = load_bundle(tmp_path)
    assert len(rank(bundle, [Query(0, 3)])[0].items) == 3
    with pytest.raises(NoItemVectors):
        similar(bundle, "i1", 3)


def test_id_maps_must_match_the_net(tmp_path):
    source = parts(MF(N_USERS, N_ITEMS))
    wrong = BundleParts(**{**source.__dict__, "item_ids": source.item_ids[:-1]})
    with pytest.raises(ValueError, match="wrong processed directory"):
        write_bundle(wrong, tmp_path)
