"""Fixtures for the serving tests: the service in-process and `bentoml serve` on loopback, both
serving the `packaged` model (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient


@pytest.fixture(scope="session")
def feedback_dir(tmp_path_factory) -> Path:
    """Where the in-process service writes /feedback events."""
    return tmp_path_factory.mktemp("feedback")


@pytest.fixture(scope="session")
def client(packaged, feedback_dir) -> Iterator[TestClient]:
    """The service's ASGI app in-process (it loads the newest model, the one just packaged).
    One for the session: a second app in the process would register BentoML's Prometheus
    metrics again (DuplicateTimeseries)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECSYS_FEEDBACK_DIR", str(feedback_dir))
        from recsys.serving.service import RecommenderService

        with TestClient(RecommenderService.to_asgi()) as test_client:
            yield test_client


@pytest.fixture(scope="session")  # one server for test_serve and test_openapi
def server(packaged, tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """`bentoml serve` as a user runs it (project root, bentofile.yaml) on a free loopback
    port; yields the base URL and the server's log."""
    from recsys.serving.local import bentoml_serve
    from tests.helpers import free_port

    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {
        "RECSYS_MODEL": packaged,
        "OMP_WAIT_POLICY": "PASSIVE",
        "RECSYS_FEEDBACK_DIR": str(tmp_path_factory.mktemp("serve_feedback")),
    }
    with bentoml_serve(free_port(), env, log) as base:
        yield base, log
