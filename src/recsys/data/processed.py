"""Read a processed directory (docs/REFERENCE.md, Processed directory) into tensors, with
clear errors for bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from recsys.errors import RecsysError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Interactions:
    """One split as aligned int64 tensors (users, items, timestamps in ms); the split itself
    already encodes time, timestamps weigh interactions within it (data.recency_half_life_days)."""

    users: torch.Tensor
    items: torch.Tensor
    timestamps: torch.Tensor

    def __len__(self) -> int:
        return self.users.numel()


@dataclass(frozen=True)
class ProcessedData:
    path: Path
    metadata: dict[str, Any]
    train: Interactions
    val: Interactions
    test: Interactions

    @property
    def n_users(self) -> int:
        return int(self.metadata["n_users"])

    @property
    def n_items(self) -> int:
        return int(self.metadata["n_items"])


def _read_split(path: Path, n_users: int, n_items: int) -> Interactions:
    try:
        df = pl.read_parquet(path, columns=["user_idx", "item_idx", "timestamp"])
    except FileNotFoundError as err:
        raise RecsysError("split file is missing; rerun recsys-preprocess", path=path) from err
    except Exception as err:  # polars raises several types for a damaged or foreign file
        raise RecsysError(f"not a readable processed split: {err}", path=path) from err
    users = torch.from_numpy(df["user_idx"].to_numpy().astype(np.int64))
    items = torch.from_numpy(df["item_idx"].to_numpy().astype(np.int64))
    if users.numel() and (int(users.min()) < 0 or int(users.max()) >= n_users):
        raise RecsysError(f"user_idx outside 0..{n_users - 1} of metadata.json", path=path)
    if items.numel() and (int(items.min()) < 0 or int(items.max()) >= n_items):
        raise RecsysError(f"item_idx outside 0..{n_items - 1} of metadata.json", path=path)
    timestamps = torch.from_numpy(df["timestamp"].to_numpy().astype(np.int64))
    return Interactions(users, items, timestamps)


def read_metadata(processed_dir: str | Path) -> dict[str, Any]:
    path = Path(processed_dir) / "metadata.json"
    if not Path(processed_dir).is_dir():
        raise RecsysError(
            "processed directory does not exist; create it with "
            "recsys-preprocess data.input=FILE data.processed_dir=DIR",
            path=processed_dir,
        )
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise RecsysError("no metadata.json: not a recsys-preprocess output", path=path) from err
    except (OSError, ValueError) as err:
        raise RecsysError(f"unreadable metadata.json: {err}", path=path) from err
    for key in ("n_users", "n_items", "n_train"):
        if not isinstance(metadata.get(key), int):
            raise RecsysError(f"metadata.json lacks the integer key '{key}'", path=path)
    return metadata


def load_processed(processed_dir: str | Path) -> ProcessedData:
    """All three splits; refuses a directory whose splits do not match its metadata."""
    root = Path(processed_dir)
    metadata = read_metadata(root)
    n_users, n_items = int(metadata["n_users"]), int(metadata["n_items"])
    splits = {name: _read_split(root / f"{name}.parquet", n_users, n_items) for name in SPLITS}
    if len(splits["train"]) == 0:
        raise RecsysError(
            "train split is empty: nothing to learn from", path=root / "train.parquet"
        )
    return ProcessedData(root, metadata, **splits)
