"""data.split_from: a new processed directory tested on the same period as an older one."""

from __future__ import annotations

import json

import polars as pl
import pytest
from rich.console import Console

from recsys.data.options import PrepareOptions, SplitKind
from recsys.data.prepare import prepare_dataset
from recsys.errors import RecsysError
from tests.data.test_feedback import event
from tests.helpers import write_lines


def split_of(directory) -> dict:
    return json.loads((directory / "metadata.json").read_text())["split"]


def test_more_interactions_keep_the_older_boundaries(tiny_processed, tmp_path):
    reviews = tiny_processed.parent / "reviews.jsonl"
    old = split_of(tiny_processed)
    # New clicks in the validation weeks: by fractions they would pull the test boundary
    # earlier, into the weeks a model trained on the older directory has already seen.
    ids = pl.read_parquet(tiny_processed / "users.parquet")["user_id"].to_list()
    items = pl.read_parquet(tiny_processed / "items.parquet")["item_id"].to_list()
    clicks = [
        event("click", ids[n % len(ids)], items[(7 * n) % len(items)], old["val_start"] + n)
        for n in range(1500)
    ]
    log = write_lines(tmp_path / "feedback" / "events.jsonl", clicks)
    quiet = Console(quiet=True)
    by_fraction = tmp_path / "by_fraction"
    prepare_dataset(reviews, by_fraction, PrepareOptions(), quiet, feedback=log.parent)
    assert split_of(by_fraction)["test_start"] < old["test_start"]

    same = tmp_path / "same"
    options = PrepareOptions(split_from=str(tiny_processed))
    prepare_dataset(reviews, same, options, quiet, feedback=log.parent)
    new = split_of(same)
    assert (new["val_start"], new["test_start"]) == (old["val_start"], old["test_start"])
    assert new["from"] == str(tiny_processed.resolve())
    assert new["test_range"][0] >= old["test_start"] and new["val_range"][1] < old["test_start"]


def test_bad_split_from_is_refused_before_reading(tiny_processed, tmp_path):
    reviews = tiny_processed.parent / "reviews.jsonl"
    quiet = Console(quiet=True)
    with pytest.raises(RecsysError, match="must be a processed directory"):
        prepare_dataset(reviews, tmp_path / "a", PrepareOptions(split_from=str(tmp_path)), quiet)
    with pytest.raises(RecsysError, match=r"needs data\.split=temporal"):
        options = PrepareOptions(split=SplitKind.leave_last_out, split_from=str(tiny_processed))
        prepare_dataset(reviews, tmp_path / "b", options, quiet)
    empty = tmp_path / "late"
    empty.mkdir()
    meta = json.loads((tiny_processed / "metadata.json").read_text())
    meta["split"].update(val_start=4_000_000_000_000, test_start=4_100_000_000_000)
    (empty / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(RecsysError, match="leave val and test empty"):
        prepare_dataset(reviews, tmp_path / "c", PrepareOptions(split_from=str(empty)), quiet)
