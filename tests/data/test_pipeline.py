"""The preprocessing stages against the naive reference (tests/reference.py), on random data."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rich.console import Console

from recsys.data import pipeline
from recsys.data.options import PrepareOptions, SplitKind
from recsys.data.prepare import prepare_dataset
from recsys.errors import RecsysError
from tests import reference
from tests.helpers import read_processed, review

JUNK = [
    b"",
    b"   ",
    b"{not json",
    b"[1, 2, 3]",
    b"null",
    b'"just a string"',
    b'{"user_id": 17, "parent_asin": "i1", "timestamp": 5}',
    b'{"user_id": "u1", "parent_asin": "i1", "timestamp": "5"}',
    b'{"user_id": "u1", "parent_asin": "i1", "timestamp": 5, "rating": "five"}',
    b'{"user_id": "", "parent_asin": "i1", "timestamp": 5}',
    b'{"user_id": "u1", "timestamp": 5}',
    b'{"user_id": "u1", "parent_asin": "i1"}',
    b'{"user_id": "u1", "parent_asin": "i1", "timestamp": 5, "rating": true}',
    b'{"user_id": "u1", "parent_asin": ["i1"], "timestamp": 5}',
    b'{"user_id": "u1", "parent_asin": "i1", "timestamp": Infinity}',
]

interaction = st.tuples(
    st.integers(0, 9), st.integers(0, 9), st.integers(0, 40), st.sampled_from([1.0, 2.5, 5.0])
)
# Dense enough that the k-core keeps something and both val and test are usually non-empty.
dense_interaction = st.tuples(
    st.integers(0, 7), st.integers(0, 7), st.integers(0, 400), st.sampled_from([1.0, 2.5, 5.0])
)


def to_lines(rows, junk, seed):
    lines = [json.dumps(review(f"u{u}", f"i{i}", t, r)).encode() for u, i, t, r in rows]
    rng = np.random.default_rng(seed)
    for j in junk:
        lines.insert(int(rng.integers(0, len(lines) + 1)), JUNK[j])
    return lines


def run_both(tmp_path, lines, options):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    try:
        expected = reference.process(
            lines,
            k=options.min_interactions,
            split=options.split.value,
            val_fraction=options.val_fraction,
            test_fraction=options.test_fraction,
        )
    except reference.Unsplittable:
        with pytest.raises(RecsysError):
            prepare_dataset(src, out, options, console=Console(quiet=True))
        return None, None
    prepare_dataset(src, out, options, console=Console(quiet=True))
    return read_processed(out), expected


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(dense_interaction, min_size=20, max_size=200),
    junk=st.lists(st.integers(0, len(JUNK) - 1), max_size=8),
    k=st.integers(1, 4),
    split=st.sampled_from(list(SplitKind)),
    seed=st.integers(0, 2**16),
)
def test_matches_reference_implementation(tmp_path_factory, rows, junk, k, split, seed):
    tmp_path = tmp_path_factory.mktemp("case")
    options = PrepareOptions(min_interactions=k, split=split, val_fraction=0.2, test_fraction=0.2)
    actual, expected = run_both(tmp_path, to_lines(rows, junk, seed), options)
    assert actual == expected
    if expected is not None:
        event(f"val and test non-empty: {bool(expected['val'] and expected['test'])}")
        event(f"k-core removed rows: {expected['kcore'] > 0}")


@pytest.mark.parametrize("split", list(SplitKind))
def test_synthetic_reviews_with_junk_match_the_reference(tmp_path, small_reviews, split):
    """The whole pipeline on 30k realistic reviews (plus junk) equals the naive reference."""
    lines = small_reviews.read_bytes().splitlines()
    options = PrepareOptions(min_interactions=5, split=split)
    actual, expected = run_both(tmp_path, to_lines_raw(lines, seed=3), options)
    assert expected["kcore"] > 0 and expected["duplicate"] > 0
    assert expected["cold"] > 0 or split == SplitKind.leave_last_out
    assert len(expected["test"]) > 1000
    assert actual == expected


def to_lines_raw(lines, seed):
    rng = np.random.default_rng(seed)
    out = list(lines)
    for j in rng.integers(0, len(JUNK), 40):
        out.insert(int(rng.integers(0, len(out) + 1)), JUNK[j])
    return out


def frame(rows):
    return pl.DataFrame(
        {
            "user": [f"u{u}" for u, _, _, _ in rows],
            "item": [f"i{i}" for _, i, _, _ in rows],
            "timestamp": [t for _, _, t, _ in rows],
            "rating": [r for _, _, _, r in rows],
        },
        schema={
            "user": pl.Categorical,
            "item": pl.Categorical,
            "timestamp": pl.Int64,
            "rating": pl.Float32,
        },
    )


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(interaction, max_size=200), k=st.integers(1, 6))
def test_kcore_is_the_fixed_point(rows, k):
    result = pipeline.kcore(frame(rows), k).frame
    kept = list(zip(result["user"].cast(str), result["item"].cast(str), strict=True))
    expected = [(f"u{u}", f"i{i}") for u, i, _, _ in reference.kcore(rows, k)]
    assert sorted(kept) == sorted(expected)
    if kept:  # every survivor has >= k interactions on both sides
        assert result.group_by("user").len()["len"].min() >= k
        assert result.group_by("item").len()["len"].min() >= k


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(interaction, max_size=200))
def test_dedupe_keeps_the_earliest(rows):
    deduped = pipeline.dedupe_earliest(frame(rows))
    got = sorted(
        zip(
            deduped["user"].cast(str),
            deduped["item"].cast(str),
            deduped["timestamp"],
            deduped["rating"],
            strict=True,
        )
    )
    expected = sorted((f"u{u}", f"i{i}", t, r) for u, i, t, r in reference.dedupe(rows))
    assert got == expected
    assert deduped.select(pl.struct("user", "item").is_unique().all()).item()


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(interaction, min_size=5, max_size=200),
    fractions=st.tuples(st.floats(0.05, 0.4), st.floats(0.05, 0.4)),
)
def test_temporal_split_invariants(rows, fractions):
    df = frame(rows)
    try:
        split = pipeline.temporal_split(df, *fractions)
    except RecsysError:
        return
    assert split.train.height + split.val.height + split.test.height == df.height
    assert split.train.height and split.val.height and split.test.height
    assert split.train["timestamp"].max() < split.val["timestamp"].min()
    assert split.val["timestamp"].max() < split.test["timestamp"].min()
    assert split.info["val_start"] == split.val["timestamp"].min()
    assert split.info["test_start"] == split.test["timestamp"].min()


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(interaction, min_size=1, max_size=150))
def test_leave_last_out_takes_each_users_latest(rows):
    df = pipeline.dedupe_earliest(frame(rows))
    split = pipeline.leave_last_out_split(df)
    assert split.train.height + split.val.height + split.test.height == df.height
    for user in split.test["user"].cast(str):
        user_rows = df.filter(pl.col("user").cast(str) == user)
        test_ts = split.test.filter(pl.col("user").cast(str) == user)["timestamp"].item()
        assert test_ts == user_rows["timestamp"].max()
    assert split.test.select(pl.col("user").is_unique().all()).item()
    assert split.val.select(pl.col("user").is_unique().all()).item()


def test_cold_rows_are_dropped_and_counted():
    train = frame([(0, 0, 1, 5.0), (1, 1, 2, 5.0)])
    val = frame([(0, 1, 3, 5.0), (2, 0, 3, 5.0)])  # user u2 never in train
    test = frame([(1, 0, 4, 5.0), (0, 3, 4, 5.0)])  # item i3 never in train
    split = pipeline.drop_cold(pipeline.Split(train, val, test))
    assert (split.val.height, split.test.height) == (1, 1)
    assert (split.cold_val, split.cold_test) == (1, 1)


def test_indices_are_contiguous_sorted_by_id_and_cover_the_kcore():
    train = frame([(3, 7, 1, 5.0), (1, 2, 2, 5.0), (3, 2, 3, 5.0)])
    later = frame([(5, 9, 4, 5.0)])  # a user and an item first seen after train
    split = pipeline.Split(train, train.head(0), train.head(0))
    indexed = pipeline.assign_indices(split, pl.concat([train, later]))
    assert indexed.users["user_id"].to_list() == ["u1", "u3", "u5"]
    assert indexed.items["item_id"].to_list() == ["i2", "i7", "i9"]
    assert indexed.train.schema == {
        "user_idx": pl.Int32,
        "item_idx": pl.Int32,
        "timestamp": pl.Int64,
        "rating": pl.Float32,
    }
    assert sorted(indexed.train["user_idx"].unique()) == [0, 1]
