"""Shared test helpers: write review lines, read a processed directory back as plain values."""

from __future__ import annotations

import gzip
import json
import socket
from pathlib import Path

import polars as pl


def review(user: str, item: str, ts: int, rating: float = 5.0, **extra) -> dict:
    """One Amazon Reviews 2023 line as a dict."""
    return {
        "rating": rating,
        "title": "t",
        "text": "x",
        "images": [],
        "asin": item,
        "parent_asin": item,
        "user_id": user,
        "timestamp": ts,
        "helpful_vote": 0,
        "verified_purchase": True,
        **extra,
    }


def write_lines(path: Path, lines: list[bytes | str | dict]) -> Path:
    """Write raw lines (dicts are JSON-encoded); gzip when the name ends in .gz."""
    data = b"".join(
        (json.dumps(x).encode() if isinstance(x, dict) else x.encode() if isinstance(x, str) else x)
        + b"\n"
        for x in lines
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)
    return path


def read_processed(directory: Path) -> dict:
    """The processed directory as the same plain values tests/reference.py produces."""
    meta = json.loads((directory / "metadata.json").read_text())

    def table(name):
        df = pl.read_parquet(directory / f"{name}.parquet")
        return sorted(
            (u, i, t, None if r is None else float(r))
            for u, i, t, r in df.select("user_idx", "item_idx", "timestamp", "rating").iter_rows()
        )

    users = pl.read_parquet(directory / "users.parquet").sort("user_idx")
    items = pl.read_parquet(directory / "items.parquet").sort("item_idx")
    return {
        "train": table("train"),
        "val": table("val"),
        "test": table("test"),
        "users": users.get_column("user_id").to_list(),
        "items": items.get_column("item_id").to_list(),
        "invalid": {k: v for k, v in meta["dropped"]["invalid"].items() if v},
        "duplicate": meta["dropped"]["duplicate"],
        "kcore": meta["dropped"]["kcore"],
        "cold": meta["dropped"]["cold"],
    }


def free_port() -> int:
    """A TCP port nothing listens on right now (for servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
