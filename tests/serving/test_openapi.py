"""The published OpenAPI document (/docs.json) tells the truth about the service: a valid
OpenAPI 3.1 document whose schemas the answers match, checked in-process, then schemathesis
with every check against a real `bentoml serve`."""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

from recsys.serving.schemas import OPERATIONS
from tests.conftest import BIN

APIS = sorted(OPERATIONS)


@pytest.fixture(scope="module")
def known_user(packaged) -> str:
    import bentoml

    from recsys.packaging.bundle import load_bundle

    return next(iter(load_bundle(bentoml.models.get(packaged).path).user_index))


@pytest.fixture(scope="module")
def trained_item(client) -> str:
    """An item with training interactions: the most popular one."""
    response = client.post("/recommend", json={"user_id": "stranger", "k": 1})
    return response.json()["items"][0]["item_id"]


@pytest.fixture(scope="module")
def document(client) -> dict:
    response = client.get("/docs.json")
    assert response.status_code == 200
    return response.json()


def body_schema(document: dict, path: str, status: int) -> dict:
    """The declared JSON schema of `path`'s answer with `status`, checkable on its own."""
    content = document["paths"][path]["post"]["responses"][str(status)]["content"]
    return {**content["application/json"]["schema"], "components": document["components"]}


def check_body(document: dict, path: str, status: int, body) -> None:
    jsonschema.Draft202012Validator(body_schema(document, path, status)).validate(body)


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)
    assert {"/livez", "/readyz", "/metrics", *APIS} <= set(document["paths"])


@pytest.mark.parametrize("path", APIS)
def test_request_bodies_are_required_json_objects_without_unknown_keys(document, path):
    body = document["paths"][path]["post"]["requestBody"]
    assert body["required"] is True and list(body["content"]) == ["application/json"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert schema["type"] == "object" and schema["additionalProperties"] is False


def test_declared_statuses_are_the_ones_the_service_answers(document):
    declared = {
        path: set(document["paths"][path]["post"]["responses"]) for path in APIS
    }  # fmt: skip
    assert declared == {
        "/recommend": {"200", "400", "415", "500"},
        "/recommend_batch": {"200", "400", "415", "500", "503"},
        "/similar_items": {"200", "400", "404", "415", "422", "500"},
        "/feedback": {"200", "400", "415", "500", "503"},
    }


@pytest.mark.parametrize("path", APIS)
def test_operations_are_described_alike(document, path):
    """/feedback, answered in front of BentoML, is described as its APIs are."""
    post = document["paths"][path]["post"]
    assert post["tags"] == ["Service APIs"]
    assert post["operationId"] == f"recsys__{path[1:]}"
    assert post["description"]


def test_every_reference_resolves_and_every_component_is_used(document):
    text = json.dumps(document)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    assert refs == set(document["components"]["schemas"])


def test_answers_match_their_declared_schemas(client, document, known_user, trained_item):
    cases = [
        ("/recommend", {"user_id": known_user, "k": 3}, 200),
        ("/recommend", {"user_id": "stranger"}, 200),  # fallback "popular"
        ("/recommend_batch", {"user_ids": [known_user, "stranger"], "k": 2}, 200),
        ("/similar_items", {"item_id": trained_item, "k": 2}, 200),
        ("/similar_items", {"item_id": "no-such-item"}, 404),
        ("/recommend", {"user_id": "u", "k": 0, "top_k": 1}, 400),
        ("/recommend_batch", {"user_ids": []}, 400),
        ("/similar_items", ["not", "an", "object"], 400),
        ("/feedback", {"events": [{"type": "click", "user_id": "u", "item_id": "i"}]}, 200),
        ("/feedback", {"events": [{"type": "click", "user_id": "u"}]}, 400),
    ]
    for path, body, status in cases:
        response = client.post(path, json=body)
        assert response.status_code == status, (path, body, response.text)
        check_body(document, path, status, response.json())
    known = client.post("/recommend", json={"user_id": known_user}).json()
    assert known["fallback"] is None  # null is in the declared schema, not cut away
    check_body(document, "/recommend", 200, known)


@pytest.mark.parametrize("path", APIS)
def test_missing_or_malformed_bodies_are_declared_400s(client, document, path):
    for content in (b"", b"{user_id: 1"):
        response = client.post(path, content=content, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        check_body(document, path, 400, response.json())
        assert isinstance(response.json()["detail"], list)


@pytest.mark.parametrize("path", APIS)
@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "application/x-www-form-urlencoded", "text/plain; charset=utf-8"],
)
def test_bodies_other_than_json_are_a_declared_415(client, document, path, content_type):
    """A multipart type without a boundary made BentoML answer 500; forms were parsed."""
    response = client.post(
        path, content=b'{"user_id": "u"}', headers={"content-type": content_type}
    )
    assert response.status_code == 415, response.text
    check_body(document, path, 415, response.json())
    assert content_type.split(";")[0] in response.json()["error"]


def test_a_json_body_with_charset_or_without_content_type_is_read(client):
    body = b'{"user_id": "u", "k": 2}'
    for headers in ({"content-type": "Application/JSON; charset=utf-8"}, {}):
        response = client.post("/recommend", content=body, headers=headers)
        assert response.status_code == 200, response.text


def test_an_integral_number_is_an_integer_k(client):
    """JSON Schema's `integer` (and so the document's) holds 10.0: the service takes it too."""
    response = client.post("/recommend", content=b'{"user_id": "u", "k": 3.0}')
    assert response.status_code == 200 and len(response.json()["items"]) == 3
    for bad in (b"2.5", b'"3"', b"true"):
        response = client.post("/recommend", content=b'{"user_id": "u", "k": %s}' % bad)
        assert response.status_code == 400, bad


# --- schemathesis against the real server ---------------------------------------------------

# Schema-valid bodies the service may still refuse: an unknown item_id (404, in the defaults)
# and an item without training interactions (422).
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


def server_errors(metrics: str) -> list[str]:
    """The Prometheus request counters of 5xx answers that counted any."""
    return [
        line
        for line in metrics.splitlines()
        if line.startswith("bentoml_service_request_total{")
        and re.search(r'http_response_code="5\d\d"', line)
        and float(line.rsplit(" ", 1)[1]) > 0
    ]


@pytest.mark.slow
def test_schemathesis_finds_nothing_against_the_served_document(server, tmp_path):
    """`st run --checks all` (examples, coverage, fuzzing and stateful phases) on the real
    server, seeded and bounded: any failed check fails the test, with schemathesis's report."""
    base, log = server
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        BIN / "st", "--config-file", config, "run", f"{base}/docs.json",
        "--checks", "all", "--max-examples", "60", "--seed", "20261202",
        "--generation-database", "none", "--workers", "1", "--no-color",
        "--report", "junit", "--report-dir", tmp_path / "report",
    ]  # fmt: skip
    done = subprocess.run(
        [str(part) for part in command],
        cwd=tmp_path,  # its cache and reports stay in the test's directory
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20_000:]
    assert re.search(r"(\d+) generated, \1 passed", output), output[-5000:]
    assert (tmp_path / "report").is_dir()
    # No 5xx hides behind a check that let it through: none was answered at all.
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        metrics = response.read().decode()
    assert 'endpoint="/similar_items"' in metrics
    assert server_errors(metrics) == []
    assert "Traceback" not in log.read_text()
