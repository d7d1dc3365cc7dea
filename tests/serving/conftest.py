"""Fixtures for the serving tests: one NeuMF trained with MLflow tracking (a checkpoint and a
registered version), packaged into the test run's BentoML store (see tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from starlette.testclient import TestClient

from recsys.packaging.sources import from_checkpoint
from recsys.packaging.store import save_parts
from tests.tracking.conftest import isolated_mlflow, train_tracked


@dataclass(frozen=True)
class Trained:
    workdir: Path
    tracking_uri: str
    ckpt: Path
    processed: Path

    def ids(self, kind: str) -> list[str]:
        return (
            pl.read_parquet(self.processed / f"{kind}s.parquet")
            .sort(f"{kind}_idx")[f"{kind}_id"]
            .to_list()
        )


@pytest.fixture(scope="session")
def trained(tiny_processed, tmp_path_factory) -> Trained:
    """NeuMF, 2 epochs on the tiny data, tracked in SQLite and registered as `recsys`."""
    workdir = tmp_path_factory.mktemp("serving_run")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    with isolated_mlflow(workdir, uri):
        train_tracked(workdir, uri, tiny_processed, "model=neumf")
    return Trained(workdir, uri, workdir / "run" / "checkpoints" / "best.ckpt", tiny_processed)


@pytest.fixture(scope="session")
def packaged(trained) -> str:
    """The trained checkpoint saved as the newest `recsys` model; returns its tag."""
    return save_parts(from_checkpoint(str(trained.ckpt)))


@pytest.fixture(scope="session")
def client(packaged) -> Iterator[TestClient]:
    """The service's ASGI app in-process (it loads the newest model, the one just packaged).
    One for the session: a second app in the process would register BentoML's Prometheus
    metrics again (DuplicateTimeseries)."""
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
    env = {"RECSYS_MODEL": packaged, "OMP_WAIT_POLICY": "PASSIVE"}
    with bentoml_serve(free_port(), env, log) as base:
        yield base, log
