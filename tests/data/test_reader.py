"""The reader: the fast strict path, the block/bisect path and the exact fallback agree."""

from __future__ import annotations

import gzip
import json

import pytest

from recsys.data import reader
from recsys.data.schema import AMAZON_2014, AMAZON_2023
from recsys.errors import RecsysError
from tests.data.test_pipeline import JUNK
from tests.helpers import review, write_lines


def rows_of(parsed):
    df = parsed.interactions
    return list(
        zip(df["user"].cast(str), df["item"].cast(str), df["timestamp"], df["rating"], strict=True)
    )


@pytest.fixture
def streamed(monkeypatch):
    """Force the block path with tiny blocks, so bisection and the Python fallback run."""
    monkeypatch.setattr(reader, "MMAP_MAX_BYTES", 0)
    monkeypatch.setattr(reader, "BLOCK_BYTES", 512)
    monkeypatch.setattr(reader, "PYTHON_FALLBACK_LINES", 2)


def mixed_lines():
    good = [review(f"u{n % 13}", f"i{n % 7}", 1_000 + n, float(n % 5 + 1)) for n in range(300)]
    lines = []
    for n, row in enumerate(good):
        lines.append(row)
        if n % 17 == 0:
            lines.append(JUNK[n % len(JUNK)])
    return good, lines


def test_clean_file_takes_the_fast_path(tmp_path, monkeypatch):
    good, _ = mixed_lines()
    path = write_lines(tmp_path / "clean.jsonl", good)
    monkeypatch.setattr(reader, "_read_streamed", None)  # would raise if called
    parsed = reader.read_interactions(path)
    assert parsed.n_valid == len(good) and parsed.n_lines == len(good)
    assert not parsed.invalid


def test_junk_gives_the_clean_rows_and_counts_every_junk_line(tmp_path, streamed):
    good, lines = mixed_lines()
    clean = reader.read_interactions(write_lines(tmp_path / "clean.jsonl", good))
    dirty = reader.read_interactions(write_lines(tmp_path / "dirty.jsonl", lines))
    assert rows_of(dirty) == rows_of(clean)
    assert sum(dirty.invalid.values()) == len(lines) - len(good)
    assert dirty.n_lines == len(lines)


def test_fast_and_streamed_paths_agree(tmp_path, monkeypatch, small_reviews):
    fast = reader.read_interactions(small_reviews)
    monkeypatch.setattr(reader, "MMAP_MAX_BYTES", 0)
    monkeypatch.setattr(reader, "BLOCK_BYTES", 64 << 10)
    slow = reader.read_interactions(small_reviews)
    assert rows_of(fast) == rows_of(slow)
    assert fast.sha256 == slow.sha256 and fast.n_lines == slow.n_lines


def test_gzip_is_read_directly(small_reviews, small_reviews_gz):
    plain = reader.read_interactions(small_reviews)
    packed = reader.read_interactions(small_reviews_gz)
    assert rows_of(plain) == rows_of(packed)


def test_numeric_looking_string_ids_are_kept_numeric_ids_are_not(tmp_path):
    path = write_lines(
        tmp_path / "ids.jsonl",
        [review("123", "0439023483", 5), {**review("u", "i", 6), "user_id": 123}],
    )
    parsed = reader.read_interactions(path)
    assert rows_of(parsed) == [("123", "0439023483", 5, 5.0)]
    assert parsed.invalid == {"bad_user_type": 1}


def test_missing_parent_asin_falls_back_to_asin(tmp_path):
    rows = [review("u", "p", 1), {**review("u", "x", 2), "parent_asin": None, "asin": "a2"}]
    parsed = reader.read_interactions(write_lines(tmp_path / "fallback.jsonl", rows))
    assert [r[1] for r in rows_of(parsed)] == ["p", "a2"]


def test_2014_schema(tmp_path):
    old = [{"reviewerID": "u", "asin": "a", "overall": 3.0, "unixReviewTime": 1_500_000_000}]
    parsed = reader.read_interactions(write_lines(tmp_path / "old.jsonl", old))
    assert parsed.schema is AMAZON_2014
    assert rows_of(parsed) == [("u", "a", 1_500_000_000_000, 3.0)]


def test_blank_lines_and_missing_final_newline(tmp_path):
    path = tmp_path / "blank.jsonl"
    path.write_bytes(
        b"\n".join(json.dumps(review("u", f"i{n}", n)).encode() for n in range(3)).replace(
            b"}\n", b"}\n\n   \n", 1
        )
    )
    parsed = reader.read_interactions(path)
    assert parsed.n_valid == 3 and parsed.invalid == {"blank_line": 2} and parsed.n_lines == 5
    assert parsed.schema is AMAZON_2023


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b""), p)[1], "is empty"),
        (lambda p: (p.write_bytes(b"junk\n[1]\n"), p)[1], "no line among the first"),
        (lambda p: (p.write_bytes(b'{"user_id": "", "timestamp": 1}\n'), p)[1], "no valid review"),
        (
            lambda p: (p.write_bytes(gzip.compress(b'{"user_id":"u"}\n' * 5000)[:60]), p)[1],
            "truncated",
        ),
    ],
)
def test_unusable_inputs_are_refused_with_a_clear_message(tmp_path, make, message):
    path = make(tmp_path / "input.jsonl")
    with pytest.raises(RecsysError, match=message) as err:
        reader.read_interactions(path)
    assert str(path) in str(err.value)


def test_schema_names():
    assert AMAZON_2023.keys == ("user_id", "parent_asin", "asin", "timestamp", "rating")


TRICKY = [
    b'{"user_id": "a\\rb", "parent_asin": "p", "timestamp": 7}\r',  # CR inside and at the end
    b'{"user_id": "u1", "parent_asin": "p", "timestamp": 7}\r{"user_id": "ZZ", '
    b'"parent_asin": "p", "timestamp": 8}',  # two objects joined by a lone CR: one bad line
    b"garbage\rmore\rstuff",
    b'{"user_id": "u1", "parent_asin": "p", "timestamp": 7, "rating": 1' + b"0" * 400 + b"}",
    b'{"user_id": "u1", "parent_asin": "p", "timestamp": 7, "rating": 1e300}',
    b'{"user_id": "U1\\ud800", "parent_asin": "p", "timestamp": 7}',
    b'{"user_id": "UA", "user_id": "UB", "parent_asin": "p", "timestamp": 7}',
    b'{"user_id": "u1", "parent_asin": "p", "timestamp": -9223372036854775808}',
    b'\x0b{"user_id": "u1", "parent_asin": "p", "timestamp": 7}',
    b'{"user_id": "nul\\u0000id", "parent_asin": "p", "timestamp": 7}',
]


@pytest.mark.parametrize("tricky", TRICKY)
@pytest.mark.parametrize("junk", [False, True])
def test_fast_and_exact_paths_agree_on_odd_lines(tmp_path, monkeypatch, tricky, junk):
    """Every odd line gets the same verdict alone (fast path) or next to junk (exact path)."""
    from tests import reference

    good = [json.dumps(review(f"u{n}", f"i{n % 3}", 100 + n)).encode() for n in range(5)]
    lines = [*good, tricky, *([b"junk"] if junk else [])]
    path = tmp_path / "odd.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    for mapped in (True, False):
        if not mapped:
            monkeypatch.setattr(reader, "MMAP_MAX_BYTES", 0)
        parsed = reader.read_interactions(path)
        expected_rows, expected_bad = reference.parse(lines, "user_id")
        got = [(u, i, t, None if r is None or r != r else r) for u, i, t, r in rows_of(parsed)]
        assert got == [(u, i, t, r) for u, i, t, r in expected_rows]
        assert parsed.invalid == expected_bad
        assert parsed.n_lines == len(lines)


def test_glob_characters_in_the_file_name(tmp_path):
    write_lines(tmp_path / "a1.jsonl", [review("other", "x", 1)] * 3)
    path = write_lines(tmp_path / "a[1].jsonl", [review("u", "i", 5)])
    assert rows_of(reader.read_interactions(path)) == [("u", "i", 5, 5.0)]


def test_carriage_return_only_file_is_one_bad_line(tmp_path):
    path = tmp_path / "cr.jsonl"
    path.write_bytes(b"\r".join(json.dumps(review("u", f"i{n}", n)).encode() for n in range(100)))
    with pytest.raises(RecsysError, match="no line among the first 1 "):
        reader.read_interactions(path)


@pytest.mark.parametrize(
    "data",
    [
        b"a\nb",
        b"a\rb\n",
        b"a\r\nb\r\n",
        b"\n",
        b"x\n\r\n",
        b'"a\nb"\n',
        b"a\x1fb\nc\n",
        b"\xff\xfe\n\x00\x00\n",
        b"#c\n",
        b"\n\n\n",
        b"  \n\t\n",
        b"a" * 5_000_000 + b"\nb\n",
    ],
)
def test_file_line_count_matches_the_byte_definition(tmp_path, data):
    path = tmp_path / "lines.jsonl"
    path.write_bytes(data)
    assert reader.count_file_lines(path) == reader.count_lines(data)
