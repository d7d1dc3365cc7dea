"""Pure preprocessing steps on an interactions frame (user, item, timestamp, rating).

Each step is a function of its input alone, so it can be property-tested in isolation.
Users and items arrive as polars Categoricals: every step works on their integer codes
and only `assign_indices` goes back to the id strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import polars as pl

from recsys.data.options import SplitKind
from recsys.errors import RecsysError


def _repeated_pairs(df: pl.DataFrame) -> np.ndarray:
    """Mask of rows whose (user, item) pair occurs more than once.

    A numpy sort of the packed 64-bit pair key: about twice as fast here as a hash-based
    `is_duplicated` on the same key.
    """
    users = df.get_column("user").to_physical().to_numpy().astype(np.uint64)
    items = df.get_column("item").to_physical().to_numpy().astype(np.uint64)
    key = (users << np.uint64(32)) | items
    order = np.argsort(key)
    same = key[order[1:]] == key[order[:-1]]
    repeated = np.zeros(len(key), dtype=bool)
    repeated[order[1:][same]] = True
    repeated[order[:-1][same]] = True
    return repeated


def dedupe_earliest(df: pl.DataFrame) -> pl.DataFrame:
    """One row per (user, item): the earliest; among equal timestamps, the first in file order.

    Repeats are a few percent of reviews, so only the rows whose pair repeats are sorted;
    the rest keep their file order untouched.
    """
    repeated = _repeated_pairs(df)
    if not repeated.any():
        return df
    candidates = np.flatnonzero(repeated)
    winners = (
        df[candidates]
        .with_columns(pl.Series("_row", candidates))
        .sort("timestamp", "_row")
        .unique(subset=["user", "item"], keep="first")
        .get_column("_row")
        .to_numpy()
    )
    keep = ~repeated
    keep[winners] = True
    return df.filter(pl.Series(keep))


@dataclass
class KCoreResult:
    frame: pl.DataFrame
    rounds: int
    removed: int

    @property
    def before(self) -> int:
        return self.frame.height + self.removed


def _rows_of(nodes: np.ndarray, order: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """All row ids of the given nodes, from a CSR layout (rows `order`ed by node)."""
    begin, end = starts[nodes], starts[nodes + 1]
    lengths = end - begin
    offsets = np.repeat(begin - np.cumsum(lengths) + lengths, lengths)
    return order[offsets + np.arange(lengths.sum())]


class _Side:
    """One side of the bipartite graph (users or items): codes, degrees, rows grouped by node."""

    def __init__(self, codes: np.ndarray):
        self.codes = codes
        self.degree = np.bincount(codes)
        self.starts = np.concatenate(([0], np.cumsum(self.degree)))

    @cached_property
    def order(self) -> np.ndarray:
        """Rows grouped by node; sorted only once peeling needs it (never on a k-core)."""
        return np.argsort(self.codes)  # any order within a node will do

    def low(self, k: int) -> np.ndarray:
        """Mask of nodes still present with fewer than k interactions."""
        return (self.degree > 0) & (self.degree < k)


def kcore(df: pl.DataFrame, k: int) -> KCoreResult:
    """Peel users and items with fewer than k interactions until none is left (the fixed point).

    Peeling by hand because no library does k-cores on a bipartite edge list: numpy keeps it
    vectorised, and CSR row groups make each pass cost only what it removes, rather than a
    full re-count per pass (tens of passes on sparse review data).
    """
    if k <= 1:
        return KCoreResult(df, 0, 0)
    sides = (
        _Side(df.get_column("user").to_physical().to_numpy().astype(np.intp)),
        _Side(df.get_column("item").to_physical().to_numpy().astype(np.intp)),
    )
    alive = np.ones(df.height, dtype=bool)
    pending = [np.flatnonzero(side.low(k)) for side in sides]
    passes, current = 0, 0
    while len(pending[0]) or len(pending[1]):
        nodes, pending[current] = pending[current], pending[current][:0]
        if len(nodes):
            passes += 1
            this, other = sides[current], sides[1 - current]
            rows = _rows_of(nodes, this.order, this.starts)
            rows = rows[alive[rows]]
            alive[rows] = False
            this.degree[nodes] = 0
            touched = np.zeros(len(other.degree), dtype=bool)
            touched[other.codes[rows]] = True
            other.degree -= np.bincount(other.codes[rows], minlength=len(other.degree))
            # Pending nodes of the other side stay pending: degrees only ever decrease.
            touched[pending[1 - current]] = True
            pending[1 - current] = np.flatnonzero(touched & other.low(k))
        current = 1 - current
    removed = int(df.height - alive.sum())
    return KCoreResult(df.filter(pl.Series(alive)) if removed else df, passes, removed)


@dataclass
class Split:
    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame
    info: dict = field(default_factory=dict)
    cold_val: int = 0
    cold_test: int = 0


def temporal_split(
    df: pl.DataFrame,
    val_fraction: float,
    test_fraction: float,
    boundaries: tuple[int, int] | None = None,
) -> Split:
    """Global time boundaries: train < val_start <= val < test_start <= test; ties stay together.

    Boundaries are the timestamps at the target quantiles, so equal timestamps always land on
    the same side and no val/test interaction precedes any train interaction; or the given
    (val_start, test_start), e.g. another processed directory's.
    """
    if boundaries is not None:
        return _split_at(df, *boundaries)
    n = df.height
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    if n_test + n_val >= n:
        raise RecsysError(
            f"only {n:,} interactions remain, too few for a {val_fraction:g}/{test_fraction:g} "
            "validation/test split; lower data.min_interactions or use more data",
            stage="temporal split",
        )
    # Three order statistics, not a full sort: np.partition is linear.
    ts = np.partition(df.get_column("timestamp").to_numpy(), [0, n - n_test - n_val, n - n_test])
    test_start = int(ts[n - n_test])
    val_start = int(ts[n - n_test - n_val])
    if val_start == ts[0] or val_start == test_start:
        shared = "the first interaction" if val_start == ts[0] else "the test boundary"
        raise RecsysError(
            "timestamps are too coarse for a temporal split: the validation boundary falls on a "
            f"timestamp shared with {shared}; use data.split=leave_last_out or other fractions",
            stage="temporal split",
        )
    return _split_at(df, val_start, test_start)


def _split_at(df: pl.DataFrame, val_start: int, test_start: int) -> Split:
    t = pl.col("timestamp")
    split = Split(
        train=df.filter(t < val_start),
        val=df.filter((t >= val_start) & (t < test_start)),
        test=df.filter(t >= test_start),
        info={"kind": SplitKind.temporal.value, "val_start": val_start, "test_start": test_start},
    )
    empty = [name for name in ("train", "val", "test") if getattr(split, name).height == 0]
    if empty:
        raise RecsysError(
            f"the boundaries val_start={val_start}, test_start={test_start} leave "
            f"{' and '.join(empty)} empty: the data does not cover that period",
            stage="temporal split",
        )
    return split


def leave_last_out_split(df: pl.DataFrame) -> Split:
    """Each user's last interaction is test, the one before is val, the rest train.

    Leaky by construction: a test interaction can precede another user's training ones, so
    models see the future. Offered for comparison with papers that use it.
    """
    # Per user, order by time with the item id breaking ties, so the split is file-order free.
    ranked = df.sort(
        pl.col("user").cast(pl.String), "timestamp", pl.col("item").cast(pl.String)
    ).with_columns(
        (pl.len().over("user") - pl.int_range(pl.len()).over("user")).alias("_from_end"),
        pl.len().over("user").alias("_n"),
    )
    from_end, n = pl.col("_from_end"), pl.col("_n")
    is_test = (from_end == 1) & (n >= 2)
    is_val = (from_end == 2) & (n >= 3)
    return Split(
        train=ranked.filter(~is_test & ~is_val).drop("_from_end", "_n"),
        val=ranked.filter(is_val).drop("_from_end", "_n"),
        test=ranked.filter(is_test).drop("_from_end", "_n"),
        info={"kind": SplitKind.leave_last_out.value, "val_start": None, "test_start": None},
    )


def _codes(df: pl.DataFrame, column: str) -> np.ndarray:
    return df.get_column(column).to_physical().to_numpy()


def _members(codes: np.ndarray, size: int) -> np.ndarray:
    """Boolean lookup table over categorical codes: True for the codes present."""
    table = np.zeros(size, dtype=bool)
    table[codes] = True
    return table


def drop_cold(split: Split) -> Split:
    """Remove val/test rows whose user or item never occurs in train (nothing to score them by).

    Membership through boolean lookup tables over the categorical codes (no hashing).
    """
    frames = (split.train, split.val, split.test)
    size = 1 + max(
        (int(_codes(df, col).max()) for df in frames if df.height for col in ("user", "item")),
        default=0,
    )
    users = _members(_codes(split.train, "user"), size)
    items = _members(_codes(split.train, "item"), size)

    def warm(df: pl.DataFrame) -> pl.DataFrame:
        return df.filter(pl.Series(users[_codes(df, "user")] & items[_codes(df, "item")]))

    val, test = warm(split.val), warm(split.test)
    return Split(
        split.train,
        val,
        test,
        split.info,
        cold_val=split.val.height - val.height,
        cold_test=split.test.height - test.height,
    )


@dataclass
class Indexed:
    train: pl.DataFrame
    val: pl.DataFrame
    test: pl.DataFrame
    users: pl.DataFrame
    items: pl.DataFrame


def _index_of(codes: pl.Series) -> tuple[pl.DataFrame, np.ndarray]:
    """Contiguous indices in lexicographic id order (independent of file order).

    Returns the (idx, id) table and a lookup array from categorical code to index.
    """
    present = codes.unique()
    ids = present.cast(pl.String)
    order = ids.arg_sort()
    table = pl.DataFrame(
        {"idx": pl.int_range(len(ids), dtype=pl.Int32, eager=True), "id": ids.gather(order)}
    )
    lookup = np.full(int(present.to_physical().max()) + 1, -1, dtype=np.int32)
    lookup[present.to_physical().gather(order).to_numpy()] = np.arange(len(ids), dtype=np.int32)
    return table, lookup


def assign_indices(split: Split, universe: pl.DataFrame) -> Indexed:
    """Map ids to int32 indices and shape each split as the processed-data contract says.

    Indices cover every user and item of `universe` (the k-core), as the dataset is defined
    before splitting: so n_users/n_items are the k-core's, and items first seen after the
    train period still exist in the catalogue. Integer gathers through a lookup array
    replace string joins (several times faster).
    """
    users, user_lookup = _index_of(universe.get_column("user"))
    items, item_lookup = _index_of(universe.get_column("item"))

    def shape(df: pl.DataFrame) -> pl.DataFrame:
        user_codes = df.get_column("user").to_physical().to_numpy()
        item_codes = df.get_column("item").to_physical().to_numpy()
        return pl.DataFrame(
            {
                "user_idx": user_lookup[user_codes],
                "item_idx": item_lookup[item_codes],
                "timestamp": df.get_column("timestamp").cast(pl.Int64),
                "rating": df.get_column("rating").cast(pl.Float32),
            }
        )  # rows keep input order: deterministic, and no sort to pay for

    return Indexed(
        train=shape(split.train),
        val=shape(split.val),
        test=shape(split.test),
        users=users.rename({"idx": "user_idx", "id": "user_id"}),
        items=items.rename({"idx": "item_idx", "id": "item_id"}),
    )
