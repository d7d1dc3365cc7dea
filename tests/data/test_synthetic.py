"""The generator behaves like review data: schema, power laws, release times, repeats, signal."""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
import pytest

from recsys.data.options import SyntheticSpec
from recsys.data.synthetic import build_world, iter_review_chunks, write_reviews
from recsys.errors import RecsysError
from tests.conftest import SMALL_SPEC

SCHEMA_KEYS = [
    "rating",
    "title",
    "text",
    "images",
    "asin",
    "parent_asin",
    "user_id",
    "timestamp",
    "helpful_vote",
    "verified_purchase",
]


@pytest.fixture(scope="module")
def reviews() -> pl.DataFrame:
    return pl.concat(list(iter_review_chunks(SMALL_SPEC)))


def test_lines_follow_the_2023_schema(small_reviews):
    lines = small_reviews.read_text().splitlines()
    assert len(lines) == SMALL_SPEC.n_interactions
    first = json.loads(lines[0])
    assert list(first) == SCHEMA_KEYS
    assert isinstance(first["rating"], float) and isinstance(first["timestamp"], int)
    assert isinstance(first["verified_purchase"], bool) and isinstance(first["images"], list)
    assert len(first["user_id"]) == 28 and first["parent_asin"].startswith("B0")


def test_deterministic_per_seed_and_gzip_streams(tmp_path, small_reviews, small_reviews_gz):
    assert gzip.decompress(small_reviews_gz.read_bytes()) == small_reviews.read_bytes()
    other = tmp_path / "other.jsonl"
    write_reviews(other, SyntheticSpec(**{**SMALL_SPEC.__dict__, "seed": 8}))
    assert other.read_bytes() != small_reviews.read_bytes()


def test_nobody_reviews_before_release_and_years_are_covered(reviews):
    world = build_world(SMALL_SPEC)
    release = dict(zip(world.item_ids.tolist(), world.item_release_ms.tolist(), strict=True))
    ts = reviews["timestamp"].to_numpy()
    released = np.array([release[p] for p in reviews["parent_asin"].to_list()])
    assert (ts >= released).all()
    years = (ts.max() - ts.min()) / (365 * 86_400_000)
    assert years > 4


def test_power_law_popularity_and_activity(reviews):
    items = reviews["parent_asin"].value_counts()["count"].sort(descending=True).to_numpy()
    users = reviews["user_id"].value_counts()["count"].sort(descending=True).to_numpy()
    # The top 10% of items and of users carry far more than 10% of reviews.
    assert items[: len(items) // 10].sum() / items.sum() > 0.25
    assert users[: len(users) // 10].sum() / users.sum() > 0.3
    assert users.max() > 5 * np.median(users)  # heavy tail, capped at n_items / 5 per user


def test_a_few_percent_repeats_and_realistic_lengths(reviews):
    repeats = reviews.height - reviews.select(pl.struct("user_id", "parent_asin").n_unique()).item()
    assert 0.01 < repeats / reviews.height < 0.08
    words = reviews["text"].str.split(" ").list.len()
    assert 10 < words.median() < 60 and words.max() > 150
    assert reviews["rating"].mean() > 3.5  # review data skews positive


def test_ratings_follow_affinity(reviews):
    world = build_world(SMALL_SPEC)
    uix = {u: n for n, u in enumerate(world.user_ids.tolist())}
    iix = {i: n for n, i in enumerate(world.item_ids.tolist())}
    u = np.array([uix[x] for x in reviews["user_id"].to_list()])
    i = np.array([iix[x] for x in reviews["parent_asin"].to_list()])
    affinity = (world.user_factors[u] * world.item_factors[i]).sum(1)
    assert np.corrcoef(affinity, reviews["rating"].to_numpy())[0, 1] > 0.3


def test_latent_structure_beats_popularity(reviews):
    """Ranking by the hidden factors finds held-out items far better than popularity does."""
    world = build_world(SMALL_SPEC)
    df = reviews.sort("timestamp").unique(
        ["user_id", "parent_asin"], keep="first", maintain_order=True
    )
    cut = df["timestamp"].quantile(0.9)
    train, test = df.filter(pl.col("timestamp") < cut), df.filter(pl.col("timestamp") >= cut)
    iix = {i: n for n, i in enumerate(world.item_ids.tolist())}
    uix = {u: n for n, u in enumerate(world.user_ids.tolist())}
    pop = np.bincount([iix[i] for i in train["parent_asin"]], minlength=len(iix)).astype(float)
    seen = train.group_by("user_id").agg("parent_asin")
    seen = dict(zip(seen["user_id"], seen["parent_asin"], strict=True))
    held = test.group_by("user_id").agg("parent_asin")
    hits = {"pop": 0, "latent": 0}
    for user, items in zip(held["user_id"], held["parent_asin"], strict=True):
        mask = [iix[i] for i in seen.get(user, [])]
        truth = {iix[i] for i in items}
        latent = world.item_factors @ world.user_factors[uix[user]]
        latent = (
            latent / SMALL_SPEC.affinity_temperature
            + SMALL_SPEC.popularity_exponent * np.log1p(pop)
        )
        for name, score in (("pop", pop.copy()), ("latent", latent)):
            score[mask] = -np.inf
            hits[name] += len(truth & set(np.argsort(-score)[:10].tolist()))
    assert hits["latent"] > 1.5 * hits["pop"]


@pytest.mark.parametrize("bad", [{"n_users": 0}, {"duplicate_rate": 1.5}, {"end_date": "2018"}])
def test_invalid_settings_are_refused(bad):
    with pytest.raises(RecsysError):
        list(iter_review_chunks(SyntheticSpec(**{**SMALL_SPEC.__dict__, **bad})))
