"""The loop's serving half through the service: simulated users (`make loop`'s) get their
top 10, click by the generator's hidden preferences and post it all to /feedback; the log
then preprocesses into interactions."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from rich.console import Console

from recsys.data.options import PrepareOptions
from recsys.data.prepare import prepare_dataset
from recsys.data.synthetic import build_world
from recsys.lifecycle.simulate import page_events, simulate, val_period
from recsys.serving.feedback import read_events
from tests.conftest import TINY_SPEC


def test_simulated_users_feedback_becomes_training_data(client, feedback_dir, trained, tmp_path):
    before = list(read_events(feedback_dir))
    window = val_period(str(trained.processed))
    counts = simulate(
        "", TINY_SPEC, n_users=300, k=10, window_ms=window, seed=1, clients=1,
        send=lambda url, body: client.post(url, json=body).raise_for_status().json(),
    )  # fmt: skip
    logged = list(read_events(feedback_dir))[len(before) :]
    by_type = {kind: sum(e["type"] == kind for e in logged) for kind in ("impression", "click")}
    assert counts["users"] == 300 and counts["impression"] == by_type["impression"] == 3000
    assert 0 < counts["click"] == by_type["click"] < counts["impression"]
    assert all(window[0] <= e["timestamp"] < window[1] for e in logged)
    assert {e["request_id"] for e in logged if e["type"] == "click"} <= {
        e["request_id"] for e in logged if e["type"] == "impression"
    }

    log = tmp_path / "feedback" / "events.jsonl"
    log.parent.mkdir()
    log.write_text("".join(json.dumps(e) + "\n" for e in logged))
    out = tmp_path / "processed"
    reviews = trained.processed.parent / "reviews.jsonl"
    prepare_dataset(reviews, out, PrepareOptions(), Console(quiet=True), feedback=log.parent)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["feedback"]["kept"] == counts["click"] + counts["purchase"]
    before_rows = sum(
        pl.scan_parquet(trained.processed / f"{s}.parquet").select(pl.len()).collect().item()
        for s in ("train", "val", "test")
    )
    after_rows = sum(
        pl.scan_parquet(out / f"{s}.parquet").select(pl.len()).collect().item()
        for s in ("train", "val", "test")
    )
    assert after_rows > before_rows


@pytest.mark.parametrize("affinity", [10.0, -10.0])
def test_clicks_follow_the_hidden_affinity(affinity):
    """An item the user loves is clicked, one they loathe never; unknown items never."""
    world = build_world(TINY_SPEC)
    world.user_factors[0] = 0.0
    world.user_factors[0, 0] = 1.0
    world.item_factors[0] = 0.0
    world.item_factors[0, 0] = affinity
    item = str(world.item_ids[0])
    result = {
        "user_id": str(world.user_ids[0]),
        "items": [{"item_id": item, "score": 1.0}, {"item_id": "unknown", "score": 0.5}],
        "request_id": "r1",
        "model_version": "7",
    }
    events = page_events(world, {item: 0}, 0, result, np.random.default_rng(0), 1000)
    clicks = [e["item_id"] for e in events if e["type"] == "click"]
    assert [e["type"] for e in events][:2] == ["impression", "impression"]
    assert clicks == ([item] if affinity > 0 else [])
    assert all(e["request_id"] == "r1" and e["model_version"] == "7" for e in events)
