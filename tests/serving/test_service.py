"""The HTTP contract (docs/REFERENCE.md, HTTP API) in-process: the service's ASGI app through
TestClient."""

from __future__ import annotations

import re

import pytest
import torch

from recsys.packaging.bundle import load_bundle
from recsys.packaging.recommend import queries, rank


@pytest.fixture(scope="module")
def users(bundle) -> list[str]:
    """Users with history (some k-core users only had cold-dropped rows: they are cold)."""
    return list(bundle.user_index)


@pytest.fixture(scope="module")
def items(trained) -> list[str]:
    return trained.ids("item")


@pytest.fixture(scope="module")
def bundle(packaged):
    import bentoml

    return load_bundle(bentoml.models.get(packaged).path)


def post(client, path: str, body) -> dict:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_recommend_answers_the_contract(client, packaged, users, bundle):
    user = users[0]
    body = post(client, "/recommend", {"user_id": user, "k": 5})
    assert set(body) == {"user_id", "items", "fallback", "model", "model_version", "request_id"}
    assert body["user_id"] == user and body["fallback"] is None and body["model"] == packaged
    assert body["model_version"] == packaged.split(":")[1]  # packaged from a checkpoint
    assert [set(entry) for entry in body["items"]] == [{"item_id", "score"}] * 5
    scores = [entry["score"] for entry in body["items"]]
    assert scores == sorted(scores, reverse=True)
    (expected,) = rank(bundle, queries(bundle, [user], 5, True))
    assert [entry["item_id"] for entry in body["items"]] == expected.items
    default = post(client, "/recommend", {"user_id": user})
    assert len(default["items"]) == 10  # k defaults to 10


def test_recommend_leaves_out_seen_items_unless_asked(client, users, bundle):
    user = users[1]
    idx = bundle.user_index[user]
    seen = bundle.seen_indices[bundle.seen_indptr[idx] : bundle.seen_indptr[idx + 1]]
    seen_ids = set(bundle.item_ids[seen.numpy()].tolist())
    k = bundle.net.n_items
    unseen = post(client, "/recommend", {"user_id": user, "k": k})
    assert len(unseen["items"]) == k - len(seen_ids)
    assert not seen_ids & {entry["item_id"] for entry in unseen["items"]}
    everything = post(client, "/recommend", {"user_id": user, "k": k, "exclude_seen": False})
    assert len(everything["items"]) == k


def test_unknown_user_gets_popular_items(client, bundle):
    body = post(client, "/recommend", {"user_id": "never-seen-user", "k": 3})
    assert body["fallback"] == "popular"
    expected = bundle.item_ids[bundle.popular_items[:3].numpy()].tolist()
    assert [entry["item_id"] for entry in body["items"]] == expected


def test_recommend_batch_answers_each_user_like_recommend(client, users):
    ids = [users[2], "never-seen-user", users[3], users[2]]
    body = post(client, "/recommend_batch", {"user_ids": ids, "k": 4})
    assert set(body) == {"results"} and [r["user_id"] for r in body["results"]] == ids
    for result in body["results"]:
        single = post(client, "/recommend", {"user_id": result["user_id"], "k": 4})
        assert [e["item_id"] for e in result["items"]] == [e["item_id"] for e in single["items"]]
        assert [e["score"] for e in result["items"]] == pytest.approx(
            [e["score"] for e in single["items"]], abs=1e-6
        )
        assert result["fallback"] == single["fallback"]
    biggest = (users * 3)[:1000]  # the largest batch allowed, repeats included
    assert len(post(client, "/recommend_batch", {"user_ids": biggest})["results"]) == 1000


def test_every_list_gets_a_fresh_request_id(client, users):
    ids = [post(client, "/recommend", {"user_id": users[0], "k": 2})["request_id"] for _ in "ab"]
    batch = post(client, "/recommend_batch", {"user_ids": [users[0], users[0], "cold"], "k": 2})
    ids += [result["request_id"] for result in batch["results"]]
    assert len(set(ids)) == 5 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_the_served_version_is_the_registry_number_or_the_tag_version():
    from recsys.serving.version import served_version

    registered = {"source_kind": "mlflow", "source": "models:/recsys/12"}
    assert served_version("recsys:abc123", registered) == "12"
    checkpoint = {"source_kind": "checkpoint", "source": "/runs/best.ckpt"}
    assert served_version("recsys:abc123", checkpoint) == "abc123"
    with pytest.raises(ValueError, match="not a resolved BentoML tag"):
        served_version("recsys", checkpoint)


def test_similar_items_are_the_nearest_gmf_item_vectors(client, items, bundle, packaged):
    body = post(client, "/similar_items", {"item_id": items[0], "k": 5})
    assert body["item_id"] == items[0] and len(body["items"]) == 5
    assert body["model"] == packaged and body["model_version"] == packaged.split(":")[1]
    assert items[0] not in {entry["item_id"] for entry in body["items"]}
    vectors = torch.nn.functional.normalize(bundle.net.gmf_item.weight, dim=1)
    sims = vectors @ vectors[0]
    sims[0] = -torch.inf
    expected = bundle.item_ids[torch.topk(sims, 5).indices.numpy()].tolist()
    assert [entry["item_id"] for entry in body["items"]] == expected


BAD_REQUESTS = [
    ("/recommend", {"user_id": "u", "k": 0}, "k"),
    ("/recommend", {"user_id": "u", "k": 1001}, "k"),
    ("/recommend", {"user_id": "u", "k": -3}, "k"),
    ("/recommend", {"user_id": "u", "k": "10"}, "k"),
    ("/recommend", {"user_id": "u", "k": 2.5}, "k"),
    ("/recommend", {"user_id": "u", "k": True}, "k"),
    ("/recommend", {"user_id": "u", "k": None}, "k"),
    ("/recommend", {"user_id": 42}, "user_id"),
    ("/recommend", {"user_id": ["u"]}, "user_id"),
    ("/recommend", {"user_id": ""}, "user_id"),
    ("/recommend", {"user_id": "x" * 513}, "user_id"),
    ("/recommend", {}, "user_id"),
    ("/recommend", {"user_id": "u", "exclude_seen": "yes"}, "exclude_seen"),
    ("/recommend", {"user_id": "u", "top_k": 5}, "top_k"),
    ("/recommend", ["u"], None),  # a JSON list where an object belongs
    ("/recommend_batch", {"user_ids": []}, "user_ids"),
    ("/recommend_batch", {"user_ids": ["u"] * 1001}, "user_ids"),
    ("/recommend_batch", {"user_ids": "u"}, "user_ids"),
    ("/recommend_batch", {"user_ids": ["u", 7]}, "user_ids"),
    ("/recommend_batch", {"user_ids": ["u"], "k": 0}, "k"),
    ("/recommend_batch", {"user_id": "u"}, "user_ids"),
    ("/similar_items", {"item_id": "u", "k": 1001}, "k"),
    ("/similar_items", {"item_id": 3}, "item_id"),
    ("/similar_items", {}, "item_id"),
]


@pytest.mark.parametrize(("path", "body", "field"), BAD_REQUESTS)
def test_bad_input_is_a_400_naming_the_field(client, path, body, field):
    response = client.post(path, json=body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert "validation error" in payload["error"]
    if field is None:
        assert payload["detail"][0]["msg"] == "Input should be an object"
    else:
        assert any(field in [str(part) for part in error["loc"]] for error in payload["detail"])


@pytest.mark.parametrize("path", ["/recommend", "/recommend_batch", "/similar_items"])
def test_a_body_that_is_not_json_is_a_400(client, path):
    response = client.post(
        path, content=b"{user_id: 1", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "Invalid JSON" in response.text


def test_unknown_item_is_a_404_with_a_message(client):
    response = client.post("/similar_items", json={"item_id": "no-such-item"})
    assert response.status_code == 404
    assert response.json() == {
        "error": "unknown item_id 'no-such-item': the model has never seen it"
    }


def test_probes_answer(client, packaged):
    assert client.get("/livez").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["model"] == packaged


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_gpu_torch_cannot_see_fails_at_start_up(packaged, monkeypatch):
    from recsys.serving.service import serving_device

    monkeypatch.delenv("RECSYS_DEVICE", raising=False)
    assert serving_device() == torch.device("cpu")
    monkeypatch.setenv("RECSYS_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="sees no CUDA device"):
        serving_device()
