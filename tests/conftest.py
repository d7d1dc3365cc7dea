"""Fixtures shared by the suite: small synthetic datasets and an isolated working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from recsys.data.options import SyntheticSpec
from recsys.data.synthetic import write_reviews

BIN = Path(os.environ.get("RECSYS_BIN", Path(__file__).resolve().parents[1] / ".venv" / "bin"))

SMALL_SPEC = SyntheticSpec(n_users=1500, n_items=400, n_interactions=30_000, seed=7)


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
    return tmp_path
