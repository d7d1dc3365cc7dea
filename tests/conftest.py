"""Fixtures shared by the suite: small synthetic datasets and an isolated working directory."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from recsys.data.options import SyntheticSpec
from recsys.data.synthetic import write_reviews

# The console scripts of the environment running the tests.
BIN = Path(sys.executable).parent

# A throwaway BentoML store for the whole run (models, bentos), set before BentoML first reads
# it: tests must never add to or read from the user's ~/bentoml. Subprocesses inherit it.
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="recsys-tests-bentoml-")
atexit.register(shutil.rmtree, os.environ["BENTOML_HOME"], ignore_errors=True)
os.environ["BENTOML_DO_NOT_TRACK"] = "true"

SMALL_SPEC = SyntheticSpec(n_users=1500, n_items=400, n_interactions=30_000, seed=7)
# ~500 users x 150 items: two epochs train in a second or two.
TINY_SPEC = SyntheticSpec(n_users=500, n_items=150, n_interactions=8000, seed=3)


@pytest.fixture(scope="session")
def small_reviews(tmp_path_factory) -> Path:
    """A 30k-review synthetic .jsonl file (generated once per session)."""
    path = tmp_path_factory.mktemp("synthetic") / "reviews.jsonl"
    write_reviews(path, SMALL_SPEC)
    return path


@pytest.fixture(scope="session")
def small_reviews_gz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("synthetic_gz") / "reviews.jsonl.gz"
    write_reviews(path, SMALL_SPEC)
    return path


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run in an empty directory so Hydra's logs/ and relative paths stay inside the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROJECT_ROOT", raising=False)  # it would move logs/ elsewhere
    monkeypatch.delenv("RECSYS_CONFIG_DIR", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def small_processed(small_reviews, tmp_path_factory) -> Path:
    """The small reviews preprocessed with the defaults (once per session; treat as read-only)."""
    from rich.console import Console

    from recsys.data.options import PrepareOptions
    from recsys.data.prepare import prepare_dataset

    out = tmp_path_factory.mktemp("processed") / "small"
    prepare_dataset(small_reviews, out, PrepareOptions(), console=Console(quiet=True))
    return out


@pytest.fixture(scope="session")
def tiny_processed(tmp_path_factory) -> Path:
    """A processed directory small enough that a tracked training run takes seconds."""
    from rich.console import Console

    from recsys.data.options import PrepareOptions
    from recsys.data.prepare import prepare_dataset

    root = tmp_path_factory.mktemp("tiny_data")
    write_reviews(root / "reviews.jsonl", TINY_SPEC)
    prepare_dataset(
        root / "reviews.jsonl", root / "processed", PrepareOptions(), console=Console(quiet=True)
    )
    return root / "processed"


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
    """NeuMF, 2 epochs on the tiny data, tracked in SQLite and registered as `recsys`: one
    training run for the serving and the batch-scoring tests."""
    from tests.tracking.conftest import isolated_mlflow, train_tracked

    workdir = tmp_path_factory.mktemp("serving_run")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    with isolated_mlflow(workdir, uri):
        train_tracked(workdir, uri, tiny_processed, "model=neumf")
    return Trained(workdir, uri, workdir / "run" / "checkpoints" / "best.ckpt", tiny_processed)


@pytest.fixture(scope="session")
def packaged(trained) -> str:
    """The trained checkpoint saved as the newest `recsys` model; returns its tag."""
    from recsys.packaging.sources import from_checkpoint
    from recsys.packaging.store import save_parts

    return save_parts(from_checkpoint(str(trained.ckpt)))
