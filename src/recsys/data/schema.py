"""Input schemas (Amazon Reviews 2023 and 2014/2018, the feedback log) and the exact rules for a
usable line.

The same rules run in two places: vectorised in polars for lines that parse strictly
(`reader.py`), and line by line here for everything else. `classify_line` is the reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import polars as pl


class Reason(StrEnum):
    """Why an input line was skipped (keys of `metadata.json` -> dropped.invalid)."""

    BLANK = "blank_line"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_USER = "missing_user"
    BAD_USER = "bad_user_type"
    MISSING_ITEM = "missing_item"
    BAD_ITEM = "bad_item_type"
    MISSING_TIMESTAMP = "missing_timestamp"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_RATING = "bad_rating"
    # Feedback log lines only (data/feedback.py).
    UNKNOWN_EVENT = "unknown_event_type"
    PARTIAL_LINE = "partial_last_line"


@dataclass(frozen=True)
class InputSchema:
    """Where one schema keeps the user, the item (in order of preference), the time and rating."""

    name: str
    user_key: str
    item_keys: tuple[str, ...]
    time_key: str
    time_to_ms: int
    rating_key: str | None  # None: lines carry no rating

    @property
    def keys(self) -> tuple[str, ...]:
        rating = () if self.rating_key is None else (self.rating_key,)
        return (self.user_key, *self.item_keys, self.time_key, *rating)

    def polars_schema(
        self, item_keys: tuple[str, ...] | None = None, *, strict_ids: bool = True
    ) -> dict[str, pl.DataType]:
        """The NDJSON reader schema; with strict_ids it fails on any line of the wrong shape.

        Int64 refuses strings and floats and Float64 refuses strings and booleans. For ids,
        Categorical refuses numbers and booleans while String silently stringifies them, so
        a String read must be followed by `coerced_id_suspects` before it can be trusted.
        """
        id_type = pl.Categorical() if strict_ids else pl.String()
        schema: dict[str, pl.DataType] = {self.user_key: id_type}
        for key in self.item_keys if item_keys is None else item_keys:
            schema[key] = id_type
        schema[self.time_key] = pl.Int64()
        if self.rating_key is not None:
            schema[self.rating_key] = pl.Float64()
        return schema


AMAZON_2023 = InputSchema(
    name="amazon-2023",
    user_key="user_id",
    item_keys=("parent_asin", "asin"),
    time_key="timestamp",
    time_to_ms=1,
    rating_key="rating",
)
AMAZON_2014 = InputSchema(
    name="amazon-2014",
    user_key="reviewerID",
    item_keys=("asin",),
    time_key="unixReviewTime",
    time_to_ms=1000,
    rating_key="overall",
)
SCHEMAS = (AMAZON_2023, AMAZON_2014)
# The service's feedback log; what each event type is worth is data/feedback.py's business.
FEEDBACK = InputSchema(
    name="recsys-feedback",
    user_key="user_id",
    item_keys=("item_id",),
    time_key="timestamp",
    time_to_ms=1,
    rating_key=None,
)

INT64_MAX = 2**63 - 1
# What polars' String reader makes of a JSON number, boolean, object or array: anything else
# it returns was a JSON string. Real ids (ASINs, user ids) that match are rare (ISBN ASINs).
COERCED_ID_PATTERN = r"^(?:[-0-9\[{]|true$|false$)"


def _any_match(raw: pl.DataFrame, keys: tuple[str, ...], pattern: str, literal: bool) -> bool:
    """Whether any distinct id matches; on Categorical columns `unique` is a cheap pass over
    integer codes, so the regex sees tens of thousands of ids rather than every row."""
    return any(
        raw.get_column(k).unique().cast(pl.String).str.contains(pattern, literal=literal).any()
        for k in keys
    )


def coerced_id_suspects(raw: pl.DataFrame, keys: tuple[str, ...]) -> bool:
    """Whether any id read as String might have been a non-string JSON value."""
    return _any_match(raw, keys, COERCED_ID_PATTERN, literal=False)


def mangled_id_suspects(raw: pl.DataFrame, keys: tuple[str, ...]) -> bool:
    """Whether any id holds NUL: polars turns an unpaired surrogate escape into one, so such
    rows must be decided by `classify_line` (a genuine NUL passes it unchanged)."""
    return _any_match(raw, keys, "\x00", literal=True)


def detect_schema(obj: Any) -> InputSchema | None:
    """The schema whose user key this decoded line carries, if any."""
    if isinstance(obj, dict):
        for schema in SCHEMAS:
            if schema.user_key in obj:
                return schema
    return None


def _reject_constant(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token}")


def _first_key_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Duplicate keys resolve to the first value, as polars' NDJSON reader does."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        obj.setdefault(key, value)
    return obj


JSON_WHITESPACE = b" \t\r\n"
FLOAT32_MAX = 3.4028234663852886e38


def decode_line(line: bytes) -> Any:
    """json.loads with the reader's conventions: no NaN/Infinity, first duplicate key wins."""
    return json.loads(line, parse_constant=_reject_constant, object_pairs_hook=_first_key_wins)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_unicode(text: str) -> bool:
    """False for strings with unpaired surrogates (legal JSON escapes, not storable text)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _rating_ok(rating: Any) -> bool:
    try:
        return _is_number(rating) and abs(float(rating)) <= FLOAT32_MAX
    except OverflowError:  # an integer too large for a float
        return False


Row = tuple[str, str, int, float | None]


def classify_line(line: bytes, schema: InputSchema) -> Row | Reason:
    """Decode one raw line: its (user, item, timestamp_ms, rating), or why it is skipped."""
    obj = decode_object(line)
    return obj if isinstance(obj, Reason) else classify_object(obj, schema)


def decode_object(line: bytes) -> dict[str, Any] | Reason:
    """One raw line as a JSON object, or why it is not one."""
    text = line.strip(JSON_WHITESPACE)
    if not text:
        return Reason.BLANK
    try:
        obj = decode_line(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return Reason.NOT_JSON
    if not isinstance(obj, dict):
        return Reason.NOT_OBJECT
    return obj


def classify_object(obj: dict[str, Any], schema: InputSchema) -> Row | Reason:
    """A decoded line's (user, item, timestamp_ms, rating), or why it is skipped."""
    user = obj.get(schema.user_key)
    if user is None or user == "":
        return Reason.MISSING_USER
    if not isinstance(user, str):
        return Reason.BAD_USER

    item = None
    wrong_item_type = False
    for key in schema.item_keys:
        value = obj.get(key)
        if isinstance(value, str) and value:
            item = value
            break
        wrong_item_type |= value is not None and not isinstance(value, str)
    if item is None:
        return Reason.BAD_ITEM if wrong_item_type else Reason.MISSING_ITEM
    if not (_is_unicode(user) and _is_unicode(item)):
        return Reason.NOT_JSON

    ts = obj.get(schema.time_key)
    if ts is None:
        return Reason.MISSING_TIMESTAMP
    if not _is_number(ts) or ts != ts or abs(ts) == float("inf"):
        return Reason.BAD_TIMESTAMP
    # Integers stay exact; a float (rare, never in real dumps) is scaled before truncation.
    ts_ms = ts * schema.time_to_ms if isinstance(ts, int) else int(ts * schema.time_to_ms)
    if abs(ts_ms) > INT64_MAX:
        return Reason.BAD_TIMESTAMP

    rating = None if schema.rating_key is None else obj.get(schema.rating_key)
    if rating is not None and not _rating_ok(rating):
        return Reason.BAD_RATING
    return user, item, ts_ms, None if rating is None else float(rating)
