"""A straightforward pandas implementation of recsys-preprocess's steps (benchmark baseline).

Written the way a notebook would: read the JSONL, keep the needed columns, clean, dedupe,
iterate the k-core with value_counts, split on time quantiles, factorize, write parquet.
Usage: python pandas_reference.py INPUT OUTPUT_DIR [MIN_INTERACTIONS]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def main(src: str, out: str, k: int = 5, val_fraction: float = 0.1, test_fraction: float = 0.1):
    df = pd.read_json(src, lines=True, dtype=False)
    df = df[["user_id", "parent_asin", "asin", "timestamp", "rating"]]
    item = df["parent_asin"].where(df["parent_asin"].astype(bool), df["asin"])
    df = pd.DataFrame(
        {"user": df["user_id"], "item": item, "timestamp": df["timestamp"], "rating": df["rating"]}
    )
    df = df[df["user"].astype(bool) & df["item"].astype(bool) & df["timestamp"].notna()]
    df = df.sort_values("timestamp", kind="stable").drop_duplicates(["user", "item"])
    while True:
        users = df["user"].map(df["user"].value_counts())
        items = df["item"].map(df["item"].value_counts())
        keep = (users >= k) & (items >= k)
        if keep.all():
            break
        df = df[keep]
    ts = np.sort(df["timestamp"].to_numpy())
    n = len(ts)
    test_start = ts[n - max(1, round(n * test_fraction))]
    val_start = ts[n - max(1, round(n * test_fraction)) - max(1, round(n * val_fraction))]
    train = df[df["timestamp"] < val_start]
    val = df[(df["timestamp"] >= val_start) & (df["timestamp"] < test_start)]
    test = df[df["timestamp"] >= test_start]
    val = val[val["user"].isin(train["user"]) & val["item"].isin(train["item"])]
    test = test[test["user"].isin(train["user"]) & test["item"].isin(train["item"])]
    users = np.sort(df["user"].unique())  # every user and item of the k-core, as recsys
    items = np.sort(df["item"].unique())
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("val", val), ("test", test)):
        pd.DataFrame(
            {
                "user_idx": pd.Categorical(part["user"], categories=users).codes.astype("int32"),
                "item_idx": pd.Categorical(part["item"], categories=items).codes.astype("int32"),
                "timestamp": part["timestamp"].astype("int64"),
                "rating": part["rating"].astype("float32"),
            }
        ).to_parquet(out_dir / f"{name}.parquet", index=False)
    pd.DataFrame({"user_idx": np.arange(len(users), dtype="int32"), "user_id": users}).to_parquet(
        out_dir / "users.parquet", index=False
    )
    pd.DataFrame({"item_idx": np.arange(len(items), dtype="int32"), "item_id": items}).to_parquet(
        out_dir / "items.parquet", index=False
    )
    (out_dir / "metadata.json").write_text(
        json.dumps(
            {
                "n_train": len(train),
                "n_val": len(val),
                "n_test": len(test),
                "n_users": len(users),
                "n_items": len(items),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
