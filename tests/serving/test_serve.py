"""The real thing: `bentoml serve` from the project root on loopback, and `bentoml build`."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import bentoml
import pytest

from recsys.packaging.bundle import load_bundle
from recsys.packaging.recommend import queries, rank
from recsys.serving.local import PROJECT_ROOT
from tests.conftest import BIN
from tests.helpers import free_port

pytestmark = pytest.mark.slow


def call(url: str, body=None) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture(scope="module")
def bundle(packaged):
    return load_bundle(bentoml.models.get(packaged).path)


def test_served_answers_match_the_bundle(server, bundle, packaged):
    base, _ = server
    users = list(bundle.user_index)[:5]
    for user, expected in zip(users, rank(bundle, queries(bundle, users, 7, True)), strict=True):
        status, text = call(f"{base}/recommend", {"user_id": user, "k": 7})
        assert status == 200, text
        body = json.loads(text)
        assert body["model"] == packaged and body["fallback"] is None
        assert [entry["item_id"] for entry in body["items"]] == expected.items
    status, text = call(f"{base}/recommend", {"user_id": "stranger"})
    assert status == 200 and json.loads(text)["fallback"] == "popular"
    item = bundle.item_ids[0]
    status, text = call(f"{base}/similar_items", {"item_id": item, "k": 3})
    assert status == 200 and len(json.loads(text)["items"]) == 3


def test_concurrent_batches_go_through_the_batching_ranker(server, bundle):
    base, _ = server
    users = list(bundle.user_index)

    def batch(i: int) -> tuple[int, str, list[str]]:
        ids = [*users[i : i + 25], "stranger"]
        return (*call(f"{base}/recommend_batch", {"user_ids": ids, "k": 5}), ids)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(batch, range(0, 16 * 25, 25)))
    for status, text, ids in answers:
        assert status == 200, text
        results = json.loads(text)["results"]
        assert [r["user_id"] for r in results] == ids
        expected = rank(bundle, queries(bundle, ids, 5, True))
        assert [[e["item_id"] for e in r["items"]] for r in results] == [e.items for e in expected]
        assert results[-1]["fallback"] == "popular"
    _, metrics = call(f"{base}/metrics")
    # The Ranker's adaptive batching records the sizes of the batches it formed.
    assert "bentoml_service_adaptive_batch_size_count" in metrics
    assert 'method_name="rank_users"' in metrics


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/recommend", {"user_id": "u", "k": 0}, 400),
        ("/recommend", {"user_id": "u", "k": "ten"}, 400),
        ("/recommend", {"user_id": 1}, 400),
        ("/recommend_batch", {"user_ids": []}, 400),
        ("/recommend_batch", {"user_ids": ["u"] * 1001}, 400),
        ("/similar_items", {"item_id": "no-such-item"}, 404),
    ],
)
def test_bad_input_is_a_4xx_with_a_message(server, path, body, status):
    base, _ = server
    code, text = call(f"{base}{path}", body)
    assert code == status and "error" in text


def test_probes_and_prometheus_metrics(server, packaged):
    base, log = server
    assert call(f"{base}/livez")[0] == 200
    status, ready = call(f"{base}/readyz")
    assert status == 200 and json.loads(ready)["model"] == packaged
    status, metrics = call(f"{base}/metrics")
    assert status == 200
    assert "bentoml_service_request_total{" in metrics and 'endpoint="/recommend"' in metrics
    assert "Traceback" not in log.read_text()  # bad input above never became a server error


def test_bentoml_build_packages_service_code_and_newest_model(packaged, tmp_path):
    result = subprocess.run(
        [BIN / "bentoml", "build", "-o", "tag"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "RECSYS_MODEL": packaged},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    bento = bentoml.get(tag)
    assert {str(m.tag) for m in bento.info.all_models} == {packaged}
    src = Path(bento.path) / "src" / "src" / "recsys" / "serving" / "service.py"
    assert src.is_file()
    requirements = (Path(bento.path) / "env" / "python" / "requirements.txt").read_text()
    assert "torch==2.13.0" in requirements and "download.pytorch.org/whl/cpu" in requirements
    assert "faiss-cpu==" in requirements  # models with an ANN index load in the image
    routes = {route["route"] for route in bento.info.schema["routes"]}
    assert {"/recommend", "/recommend_batch", "/similar_items"} <= routes


def test_serve_without_a_packaged_model_says_what_to_do(tmp_path):
    result = subprocess.run(
        [BIN / "bentoml", "serve", "--port", str(free_port())],
        cwd=PROJECT_ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "RECSYS_MODEL"},
            "BENTOML_HOME": str(tmp_path / "empty-store"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "no BentoML model 'recsys:latest' in the model store" in result.stderr
    assert "recsys-package ckpt_path=FILE" in result.stderr
