"""An independent check of a processed directory against docs/REFERENCE.md, Processed directory."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

SPLIT_SCHEMA = {
    "user_idx": pl.Int32,
    "item_idx": pl.Int32,
    "timestamp": pl.Int64,
    "rating": pl.Float32,
}


def train_users(parts) -> int:
    return parts["train"]["user_idx"].n_unique()


def check_processed_dir(directory: Path, *, temporal: bool = True) -> dict:
    meta = json.loads((directory / "metadata.json").read_text())
    for key in (
        "n_users",
        "n_items",
        "n_train",
        "n_val",
        "n_test",
        "min_interactions",
        "split",
        "input_sha256",
        "schema_version",
        "dropped",
    ):
        assert key in meta, key
    for key in ("invalid", "duplicate", "kcore", "cold"):
        assert key in meta["dropped"], key
    assert isinstance(meta["dropped"]["invalid"], dict)

    parts = {
        name: pl.read_parquet(directory / f"{name}.parquet") for name in ("train", "val", "test")
    }
    for name, df in parts.items():
        assert dict(df.schema) == SPLIT_SCHEMA, name
        assert df.height == meta[f"n_{name}"]
    users = pl.read_parquet(directory / "users.parquet")
    items = pl.read_parquet(directory / "items.parquet")
    assert dict(users.schema) == {"user_idx": pl.Int32, "user_id": pl.String}
    assert dict(items.schema) == {"item_idx": pl.Int32, "item_id": pl.String}
    assert sorted(users["user_idx"]) == list(range(meta["n_users"]))
    assert sorted(items["item_idx"]) == list(range(meta["n_items"]))
    assert users["user_id"].is_unique().all() and items["item_id"].is_unique().all()

    everything = pl.concat(parts.values())
    assert everything["user_idx"].max() < meta["n_users"]
    assert everything["item_idx"].max() < meta["n_items"]
    assert meta["n_train_users"] == train_users(parts) and meta["n_train_users"] <= meta["n_users"]
    assert everything.select(pl.struct("user_idx", "item_idx").is_unique().all()).item()
    train = parts["train"]
    for name in ("val", "test"):  # nothing cold: every val/test user and item occurs in train
        assert parts[name]["user_idx"].is_in(train["user_idx"].implode()).all()
        assert parts[name]["item_idx"].is_in(train["item_idx"].implode()).all()
    if temporal:
        assert train["timestamp"].max() < parts["val"]["timestamp"].min()
        assert parts["val"]["timestamp"].max() < parts["test"]["timestamp"].min()
    return meta
