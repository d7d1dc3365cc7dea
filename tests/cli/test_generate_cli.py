"""recsys-generate through the real console script."""

from __future__ import annotations

import gzip
import json
import subprocess

import pytest

from tests.conftest import BIN

pytestmark = pytest.mark.slow


def generate(cwd, *overrides):
    return subprocess.run(
        [BIN / "recsys-generate", *overrides], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_generate_gz_and_plain_are_the_same_reviews(in_tmp):
    args = ["n_users=300", "n_items=100", "n_interactions=3000", "seed=3"]
    assert generate(in_tmp, "out=a.jsonl.gz", *args).returncode == 0
    assert generate(in_tmp, "out=b.jsonl", *args).returncode == 0
    plain = (in_tmp / "b.jsonl").read_bytes()
    assert gzip.decompress((in_tmp / "a.jsonl.gz").read_bytes()) == plain
    lines = plain.splitlines()
    assert len(lines) == 3000 and "parent_asin" in json.loads(lines[0])


def test_generate_errors(in_tmp):
    missing = generate(in_tmp)
    assert missing.returncode == 2 and "out" in missing.stderr
    wrong = generate(in_tmp, "out=x.csv")
    assert wrong.returncode == 2 and ".jsonl" in wrong.stderr
    typed = generate(in_tmp, "out=x.jsonl", "n_users=many")
    assert typed.returncode == 1 and "n_users" in typed.stderr  # Hydra's own error
    negative = generate(in_tmp, "out=x.jsonl", "seed=-1")
    assert negative.returncode == 2 and "seed must be >= 0" in negative.stderr
    assert not (in_tmp / "x.jsonl").exists()
