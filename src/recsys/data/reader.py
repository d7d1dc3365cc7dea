"""Read review JSONL (plain or gzip) into typed interactions, counting every skipped line by reason.

Speed comes from polars' multi-threaded NDJSON reader under a *strict* schema (see
`InputSchema.polars_schema`): a block that parses strictly needs only vectorised
checks. A block that does not parse is bisected until the offending lines are isolated,
and those few lines go through the exact Python rules in `schema.classify_line`.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import polars as pl

from recsys.data.fingerprint import FileFingerprint
from recsys.data.schema import (
    FLOAT32_MAX,
    INT64_MAX,
    InputSchema,
    Reason,
    classify_line,
    coerced_id_suspects,
    decode_line,
    detect_schema,
    mangled_id_suspects,
)
from recsys.errors import RecsysError

STAGE = "reading the input"
GZIP_MAGIC = b"\x1f\x8b"
BLOCK_BYTES = 8 << 20
# Blocks with at most this many lines that fail the strict parse are classified in Python.
PYTHON_FALLBACK_LINES = 64
# Plain files up to this size are parsed straight from the OS page cache (fastest); larger
# ones stream in blocks so peak memory stays bounded whatever the input size.
MMAP_MAX_BYTES = 1 << 30
SCHEMA_PROBE_LINES = 100_000

INTERACTION_SCHEMA = {
    "user": pl.Categorical(),
    "item": pl.Categorical(),
    "timestamp": pl.Int64(),
    "rating": pl.Float32(),
}


@dataclass
class ParsedInput:
    """Valid interactions in file order, plus what was skipped and why.

    Every line is either valid or counted, except on the fast path, where the NDJSON reader
    skips blank lines unseen: there `count_file_lines` gives the total (taken on first use,
    off the critical path) and the difference is the blank lines.
    """

    interactions: pl.DataFrame
    schema: InputSchema
    fingerprint: FileFingerprint
    parsed_invalid: Counter[str]
    count_file_lines: Callable[[], int] | None = None

    @property
    def n_valid(self) -> int:
        return self.interactions.height

    @property
    def _n_seen(self) -> int:
        return self.n_valid + sum(self.parsed_invalid.values())

    @cached_property
    def n_lines(self) -> int:
        return self._n_seen if self.count_file_lines is None else self.count_file_lines()

    @cached_property
    def invalid(self) -> Counter[str]:
        counts = Counter(self.parsed_invalid)
        if self.n_lines > self._n_seen:
            counts[Reason.BLANK.value] += self.n_lines - self._n_seen
        return counts

    @property
    def sha256(self) -> str:
        return self.fingerprint.sha256


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def check_input_file(path: Path) -> None:
    """Refuse missing, unreadable, empty or non-file inputs with a message that says which."""
    if not path.exists():
        raise RecsysError("input file does not exist", path=path, stage=STAGE)
    if path.is_dir():
        raise RecsysError(
            "input is a directory; pass a .jsonl or .jsonl.gz file", path=path, stage=STAGE
        )
    if not os.access(path, os.R_OK):
        raise RecsysError("input file is not readable (permission denied)", path=path, stage=STAGE)
    if path.stat().st_size == 0:
        raise RecsysError("input file is empty", path=path, stage=STAGE)


def _raw_stream(path: Path, gz: bool) -> Iterator[bytes]:
    """The file's decompressed bytes in blocks; a damaged gzip becomes a RecsysError."""
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as fh:
            while block := fh.read(BLOCK_BYTES):
                yield block
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise RecsysError(
            f"the gzip stream is damaged or truncated ({err}); re-download or re-compress it",
            path=path,
            stage=STAGE,
        ) from err


def line_blocks(path: Path, gz: bool) -> Iterator[bytes]:
    """Blocks of whole lines (each ends with a newline, except possibly the last)."""
    rest = b""
    for block in _raw_stream(path, gz):
        block = rest + block
        cut = block.rfind(b"\n") + 1
        rest = block[cut:]
        if cut:
            yield block[:cut]
    if rest:
        yield rest


def split_lines(data: bytes) -> list[bytes]:
    """Lines end at \\n only (as for polars and the line count), never at a lone \\r."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def count_file_lines(path: Path) -> int:
    """Lines in a plain file, as `count_lines` counts them, with polars' multi-threaded CSV row
    count (a single column that no JSON text can split, no quoting): about ten times less
    CPU than bytes.count. tests/data/test_reader.py pins the two definitions together."""
    with open(path, "rb") as fh:  # a handle: a path would be expanded as a glob
        lines = pl.scan_csv(fh, has_header=False, separator="\x1f", quote_char=None)
        return int(lines.select(pl.len()).collect().item())


def count_lines(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def detect_input_schema(path: Path, gz: bool) -> InputSchema:
    """The majority schema among the first lines that decode to an object with a user key."""
    votes: Counter[InputSchema] = Counter()
    seen = 0
    lines = (line for block in line_blocks(path, gz) for line in split_lines(block))
    with contextlib.closing(lines):
        for line in itertools.islice(lines, SCHEMA_PROBE_LINES):
            seen += 1
            try:
                schema = detect_schema(decode_line(line))
            except (ValueError, RecursionError):
                continue
            if schema is not None:
                votes[schema] += 1
                if votes.total() >= 100:
                    break
    if not votes:
        raise RecsysError(
            f"no line among the first {seen:,} is a review: expected JSON objects with a "
            "'user_id' (Amazon Reviews 2023) or 'reviewerID' (2014/2018) key",
            path=path,
            stage=STAGE,
        )
    return votes.most_common(1)[0][0]


def validate_strict(
    raw: pl.DataFrame,
    schema: InputSchema,
    item_keys: tuple[str, ...] | None = None,
    keep: tuple[str, ...] = (),
) -> tuple[pl.DataFrame, Counter[str]]:
    """Vectorised `classify_line` for rows that parsed under the strict schema (types are right);
    `keep` names raw columns passed through to the valid rows."""
    user = pl.col(schema.user_key)
    rating = pl.col(schema.rating_key) if schema.rating_key else pl.lit(None, pl.Float64)
    item = pl.coalesce(
        [pl.when(pl.col(k) != "").then(pl.col(k)) for k in item_keys or schema.item_keys]
    )
    ts = pl.col(schema.time_key)
    limit = INT64_MAX // schema.time_to_ms
    reason = (
        pl.when(user.is_null() | (user == ""))
        .then(pl.lit(Reason.MISSING_USER.value))
        .when(item.is_null())
        .then(pl.lit(Reason.MISSING_ITEM.value))
        .when(ts.is_null())
        .then(pl.lit(Reason.MISSING_TIMESTAMP.value))
        .when((ts > limit) | (ts < -limit))  # not abs(): it overflows at the int64 minimum
        .then(pl.lit(Reason.BAD_TIMESTAMP.value))
        .when(rating.abs() > FLOAT32_MAX)
        .then(pl.lit(Reason.BAD_RATING.value))
    )
    checked = (
        raw.lazy()
        .select(
            user.alias("user"),
            item.alias("item"),
            (ts * schema.time_to_ms).alias("timestamp"),
            rating.cast(pl.Float32).alias("rating"),
            reason.alias("reason"),
            *keep,
        )
        .collect()
    )
    counts: Counter[str] = Counter()
    bad = checked.get_column("reason").drop_nulls()
    if bad.len():
        counts.update(dict(bad.value_counts().iter_rows()))
        checked = checked.filter(pl.col("reason").is_null())
    return checked.drop("reason"), counts


def _rows_to_frame(rows: list[tuple]) -> pl.DataFrame:
    """Frame of Python-classified rows; ids become Categoricals sharing polars' global codes."""
    return pl.DataFrame(rows, schema=INTERACTION_SCHEMA, orient="row")


def _parse_block(block: bytes, schema: InputSchema) -> tuple[pl.DataFrame, Counter[str]]:
    """Strict polars parse; on failure bisect until bad lines can be classified one by one."""
    strict = schema.polars_schema()
    try:
        raw = pl.read_ndjson(block, schema=strict)
    except (Exception, pl.exceptions.PanicException):  # any failure -> the exact slow path
        raw = None
    if raw is not None and not mangled_id_suspects(raw, (schema.user_key, *schema.item_keys)):
        frame, counts = validate_strict(raw, schema)
        blank = count_lines(block) - raw.height  # the NDJSON reader skips blank lines
        if blank:
            counts[Reason.BLANK.value] += blank
        return frame, counts

    lines = split_lines(block)
    if len(lines) <= PYTHON_FALLBACK_LINES:
        rows, counts = [], Counter()
        for line in lines:
            result = classify_line(line, schema)
            if isinstance(result, Reason):
                counts[result.value] += 1
            else:
                rows.append(result)
        return _rows_to_frame(rows), counts

    # Split after the first newline past the middle (or the last one before the end): with
    # more than PYTHON_FALLBACK_LINES lines both halves are non-empty, so this terminates.
    middle = block.find(b"\n", len(block) // 2, len(block) - 1) + 1
    if middle == 0:
        middle = block.rfind(b"\n", 0, len(block) - 1) + 1
    left, left_counts = _parse_block(block[:middle], schema)
    right, right_counts = _parse_block(block[middle:], schema)
    return pl.concat([left, right]), left_counts + right_counts


def _read_mapped(path: Path, schema: InputSchema) -> tuple[pl.DataFrame, Counter[str]] | None:
    """Whole-file scan from the page cache; None when the exact block path is needed.

    Fastest first: ids as String (no interning while parsing) and only the preferred item
    key (parent_asin). If an id might be a stringified non-string, re-scan with the strict
    Categorical schema; if parent_asin is ever unusable, let the block path use the fallback
    item keys too. Returns the valid rows and the invalid counts (blank lines excepted).
    """
    item_keys = schema.item_keys[:1]
    id_keys = (schema.user_key, *item_keys)

    def scan(strict_ids: bool) -> pl.DataFrame:
        # A file handle, not the path: polars would expand [ ] * ? in a path as a glob.
        with open(path, "rb") as fh:
            ndjson = pl.scan_ndjson(
                fh, schema=schema.polars_schema(item_keys, strict_ids=strict_ids)
            )
            return ndjson.collect()

    try:
        raw = scan(strict_ids=False)
        raw = raw.with_columns(pl.col(k).cast(pl.Categorical()) for k in id_keys)
        if coerced_id_suspects(raw, id_keys):
            raw = scan(strict_ids=True)
    except (Exception, pl.exceptions.PanicException):
        return None
    if mangled_id_suspects(raw, id_keys):
        return None
    first_item = raw.get_column(item_keys[0])
    if len(schema.item_keys) > 1 and (first_item.null_count() or (first_item == "").any()):
        return None
    return validate_strict(raw, schema, item_keys)


def _read_streamed(
    path: Path, schema: InputSchema, gz: bool, on_bytes: Callable[[int], None] | None
) -> tuple[pl.DataFrame, Counter[str]]:
    """Blocks parsed two at a time (2 cores), with a bounded window to cap memory."""
    frames: list[pl.DataFrame] = []
    counts: Counter[str] = Counter()
    window: list[Future] = []

    def collect(future: Future) -> None:
        frame, block_counts = future.result()
        frames.append(frame)
        counts.update(block_counts)

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="recsys-parse") as pool:
        for block in line_blocks(path, gz):
            window.append(pool.submit(_parse_block, block, schema))
            if on_bytes:
                on_bytes(len(block))
            if len(window) >= 3:
                collect(window.pop(0))
        for future in window:
            collect(future)
    frame = pl.concat(frames) if frames else _rows_to_frame([])
    return frame, counts


def read_interactions(
    path: str | os.PathLike[str],
    on_bytes: Callable[[int], None] | None = None,
    fingerprint: FileFingerprint | None = None,
) -> ParsedInput:
    """Parse a reviews file; `on_bytes` reports progress in decompressed bytes (streamed path)."""
    path = Path(path)
    check_input_file(path)
    fingerprint = fingerprint or FileFingerprint(path)
    gz = is_gzip(path)
    schema = detect_input_schema(path, gz)

    mapped = None
    if not gz and path.stat().st_size <= MMAP_MAX_BYTES:
        mapped = _read_mapped(path, schema)
    if mapped is not None:
        frame, counts = mapped
        parsed = ParsedInput(frame, schema, fingerprint, counts, lambda: count_file_lines(path))
    else:
        frame, counts = _read_streamed(path, schema, gz, on_bytes)
        parsed = ParsedInput(frame, schema, fingerprint, counts)

    if frame.height == 0:
        detail = ", ".join(f"{k}: {v:,}" for k, v in parsed.invalid.most_common()) or "no lines"
        raise RecsysError(
            f"no valid review in {parsed.n_lines:,} lines ({detail}); each line must be a "
            f"JSON object with a non-empty string '{schema.user_key}', an item key "
            f"({' or '.join(repr(k) for k in schema.item_keys)}) and a numeric "
            f"'{schema.time_key}'",
            path=path,
            stage=STAGE,
        )
    return parsed
