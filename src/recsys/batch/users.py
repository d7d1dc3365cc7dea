"""Which users a batch job scores: every user of the model, or the ids in a file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from recsys.errors import RecsysError

ALL = "all"
ID_COLUMN = "user_id"
FORMATS = (".parquet", ".csv", ".txt")


def read_user_ids(path: str | Path) -> pl.Series:
    """The ids in a parquet or csv file (column `user_id`, or its only column) or a txt file
    (one id a line; blank lines skipped), in file order, duplicates dropped."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise RecsysError(f"users= must be 'all' or a {', '.join(FORMATS)} file", path=path)
    if not path.is_file():
        raise RecsysError("no such users file", path=path)
    try:
        if path.suffix == ".txt":
            lines = path.read_text(encoding="utf-8").splitlines()
            ids = pl.Series(ID_COLUMN, [line.strip() for line in lines], dtype=pl.String)
            ids = ids.filter(ids != "")
        else:
            frame = (
                pl.read_parquet(path)
                if path.suffix == ".parquet"
                else pl.read_csv(path, infer_schema=False)  # ids stay strings: "007" != "7"
            )
            ids = _id_column(frame, path)
    except RecsysError:
        raise
    except Exception as err:  # polars/OS errors: unreadable, not parquet, bad encoding
        raise RecsysError(f"cannot read the users file: {err}", path=path) from err
    if ids.null_count():
        row = int(ids.is_null().arg_true()[0])
        raise RecsysError(f"user_id is empty in data row {row + 1}", path=path)
    if ids.len() == 0:
        raise RecsysError("the users file holds no user ids", path=path)
    return ids.unique(maintain_order=True)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def ids_sha256(ids: pl.Series) -> str:
    """A digest of an id list (users=all: the model's users, in order)."""
    digest = hashlib.sha256()
    for start in range(0, ids.len(), 1 << 16):
        digest.update("\n".join(ids.slice(start, 1 << 16).to_list()).encode() + b"\n")
    return digest.hexdigest()


def _id_column(frame: pl.DataFrame, path: Path) -> pl.Series:
    if ID_COLUMN in frame.columns:
        column = frame[ID_COLUMN]
    elif frame.width == 1:
        column = frame.to_series()
    else:
        raise RecsysError(
            f"no '{ID_COLUMN}' column among {frame.columns}: name the id column {ID_COLUMN}",
            path=path,
        )
    if column.dtype != pl.String:
        column = column.cast(pl.String)
    return column.rename(ID_COLUMN)
