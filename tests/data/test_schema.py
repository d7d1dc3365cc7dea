"""The exact line rules (docs/REFERENCE.md, Input; docs/DATA.md): every skip reason, both
schemas, schema detection."""

from __future__ import annotations

import json

import pytest

from recsys.data.reader import detect_input_schema
from recsys.data.schema import AMAZON_2014, AMAZON_2023, Reason, classify_line
from tests.helpers import review, write_lines

GOOD = review("u1", "p1", 1_600_000_000_000, 4.0)


def line(obj) -> bytes:
    return json.dumps(obj).encode() if not isinstance(obj, bytes) else obj


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", Reason.BLANK),
        (b"   \t\r", Reason.BLANK),
        (b"not json", Reason.NOT_JSON),
        (b'{"user_id": "u", "timestamp": 1', Reason.NOT_JSON),
        (b'{"user_id":"u","parent_asin":"p","timestamp":NaN}', Reason.NOT_JSON),
        (b"\xff\xfe{}", Reason.NOT_JSON),
        (b"[1, 2]", Reason.NOT_OBJECT),
        (b'"text"', Reason.NOT_OBJECT),
        (b"null", Reason.NOT_OBJECT),
        (b"42", Reason.NOT_OBJECT),
        (line({**GOOD, "user_id": None}), Reason.MISSING_USER),
        (line({k: v for k, v in GOOD.items() if k != "user_id"}), Reason.MISSING_USER),
        (line({**GOOD, "user_id": ""}), Reason.MISSING_USER),
        (line({**GOOD, "user_id": 123}), Reason.BAD_USER),
        (line({**GOOD, "user_id": True}), Reason.BAD_USER),
        (line({**GOOD, "user_id": ["u"]}), Reason.BAD_USER),
        (line({**GOOD, "parent_asin": None, "asin": None}), Reason.MISSING_ITEM),
        (line({**GOOD, "parent_asin": "", "asin": ""}), Reason.MISSING_ITEM),
        (line({**GOOD, "parent_asin": 5, "asin": None}), Reason.BAD_ITEM),
        (line({**GOOD, "timestamp": None}), Reason.MISSING_TIMESTAMP),
        (line({k: v for k, v in GOOD.items() if k != "timestamp"}), Reason.MISSING_TIMESTAMP),
        (line({**GOOD, "timestamp": "1600000000000"}), Reason.BAD_TIMESTAMP),
        (line({**GOOD, "timestamp": True}), Reason.BAD_TIMESTAMP),
        (line({**GOOD, "timestamp": 2**70}), Reason.BAD_TIMESTAMP),
        (line({**GOOD, "rating": "5"}), Reason.BAD_RATING),
        (line({**GOOD, "rating": False}), Reason.BAD_RATING),
        (line({**GOOD, "rating": [5]}), Reason.BAD_RATING),
    ],
)
def test_every_skip_reason(raw, reason):
    assert classify_line(raw, AMAZON_2023) == reason


def test_valid_line_and_fallbacks():
    assert classify_line(line(GOOD), AMAZON_2023) == ("u1", "p1", 1_600_000_000_000, 4.0)
    # parent_asin missing or empty: the item falls back to asin
    no_parent = {**GOOD, "parent_asin": "", "asin": "a9"}
    assert classify_line(line(no_parent), AMAZON_2023)[1] == "a9"
    # a missing rating is allowed (implicit feedback); a float timestamp is truncated
    no_rating = {k: v for k, v in GOOD.items() if k != "rating"}
    assert classify_line(line(no_rating), AMAZON_2023)[3] is None
    assert classify_line(line({**GOOD, "timestamp": 1.9e3}), AMAZON_2023)[2] == 1900


def test_2014_schema_scales_seconds_to_ms():
    old = {"reviewerID": "u1", "asin": "p1", "overall": 4.0, "unixReviewTime": 1_600_000_000}
    assert classify_line(line(old), AMAZON_2014) == ("u1", "p1", 1_600_000_000_000, 4.0)


def test_schema_detected_from_keys(tmp_path):
    new = write_lines(tmp_path / "new.jsonl", ["junk", GOOD])
    old = write_lines(
        tmp_path / "old.jsonl.gz",
        [{"reviewerID": "u", "asin": "a", "overall": 5.0, "unixReviewTime": 1}],
    )
    assert detect_input_schema(new, gz=False) is AMAZON_2023
    assert detect_input_schema(old, gz=True) is AMAZON_2014
