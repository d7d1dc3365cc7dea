"""The feedback log as preprocessing input: events become interactions, junk is counted."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pytest
from rich.console import Console

from recsys.data import feedback, reader
from recsys.data.options import EventType, PrepareOptions
from recsys.data.prepare import prepare_dataset
from recsys.data.schema import Reason
from recsys.errors import RecsysError
from tests.data.test_pipeline import JUNK
from tests.helpers import read_processed, review, write_lines

PARQUETS = ("train.parquet", "val.parquet", "test.parquet", "users.parquet", "items.parquet")
T0 = 1_700_000_000_000


def event(kind: str, user: str, item: str, ts: int, **extra) -> dict:
    """One line of the service's log, with every key it writes."""
    return {
        "type": kind,
        "user_id": user,
        "item_id": item,
        "request_id": None,
        "timestamp": ts,
        "model_version": "3",
        "served_by": "3",
        "received_at": T0,
        **extra,
    }


def choices(n: int = 900, seed: int = 0) -> list[tuple[str, str, str, int]]:
    """Dense random (kind, user, item, ts): every user and item passes the 5-core."""
    rng = np.random.default_rng(seed)
    times = T0 + np.sort(rng.choice(10**6, n, replace=False)) * 1000
    return [
        ("purchase" if n % 5 == 0 else "click", f"u{rng.integers(30)}", f"i{rng.integers(20)}", t)
        for n, t in enumerate(times.tolist())
    ]


def as_events(rows) -> list[dict]:
    return [event(*row) for row in rows]


def as_reviews(rows) -> list[dict]:
    return [review(u, i, t, feedback.EVENT_RATINGS[EventType(k)]) for k, u, i, t in rows]


def prepare(tmp_path, name="out", *, reviews=None, log=None, **options):
    out = tmp_path / name
    meta = prepare_dataset(
        reviews, out, PrepareOptions(**options), console=Console(quiet=True), feedback=log
    )
    return out, meta


def parquets(directory):
    return {name: (directory / name).read_bytes() for name in PARQUETS}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_feedback_log_preprocesses_like_reviews_of_the_same_choices(tmp_path):
    rows = choices()
    events = as_events(rows)
    log = tmp_path / "feedback"
    first = write_lines(log / "events-20240101T000000-h-1-0.jsonl", events[:500])
    second = write_lines(log / "events-20240102T000000-h-1-0.jsonl", events[500:])
    (log / "notes.txt").write_text("not a log file")
    reviews = write_lines(tmp_path / "reviews.jsonl", as_reviews(rows))

    from_log, meta = prepare(tmp_path, "log", log=log)
    from_reviews, _ = prepare(tmp_path, "reviews", reviews=reviews)
    assert parquets(from_log) == parquets(from_reviews)
    assert meta["input"] is None
    fb = meta["feedback"]
    assert fb["path"] == str(log.resolve()) and fb["lines"] == len(rows)
    assert [f["name"] for f in fb["files"]] == [first.name, second.name]
    assert [f["sha256"] for f in fb["files"]] == [sha(first.read_bytes()), sha(second.read_bytes())]
    n_purchases = sum(k == "purchase" for k, *_ in rows)
    assert fb["events"] == {
        "impression": 0,
        "click": len(rows) - n_purchases,
        "purchase": n_purchases,
    }
    assert fb["kept"] == len(rows) and fb["event_types"] == ["click", "purchase"]
    assert fb["ratings"] == {"click": 1.0, "purchase": 5.0}
    manifest = "".join(f"feedback {f['sha256']}\n" for f in fb["files"])
    assert meta["input_sha256"] == sha(manifest.encode())


def test_reviews_and_feedback_dedupe_to_the_earliest_of_both(tmp_path):
    rows = choices()
    seen = {(u, i) for _, u, i, _ in rows}
    a, b, *_ = [
        (f"u{u}", f"i{i}") for u in range(30) for i in range(20) if (f"u{u}", f"i{i}") not in seen
    ]
    ta, tb = T0 + 500, T0 + 700  # early: both land in train
    reviews = write_lines(
        tmp_path / "reviews.jsonl",
        [*as_reviews(rows), review(*a, ta, 3.0), review(*b, tb, 2.0)],
    )
    alone_dir, alone = prepare(tmp_path, "alone", reviews=reviews)
    (tmp_path / "no-feedback-yet").mkdir()
    empty_dir, empty = prepare(tmp_path, "empty", reviews=reviews, log=tmp_path / "no-feedback-yet")
    assert parquets(empty_dir) == parquets(alone_dir) and empty["feedback"]["files"] == []
    log = write_lines(
        tmp_path / "feedback" / "events-1.jsonl",
        [
            event("click", *a, ta + 1),  # after the review: the review stays
            event("purchase", *b, tb - 1),  # before it: the purchase replaces it
            event("click", "u0", "i-new", T0 + 5),  # a new pair (its item falls to the k-core)
        ],
    )
    out, meta = prepare(tmp_path, reviews=reviews, log=log.parent)
    got = read_processed(out)
    pairs = {
        (got["users"][u], got["items"][i]): (t, r)
        for split in ("train", "val", "test")
        for u, i, t, r in got[split]
    }
    assert pairs[a] == (ta, 3.0) and pairs[b] == (tb - 1, 5.0)
    assert meta["dropped"]["duplicate"] == alone["dropped"]["duplicate"] + 2
    assert meta["feedback"]["kept"] == 3 and meta["input"]["valid"] == len(rows) + 2
    assert alone["input_sha256"] == sha(reviews.read_bytes())
    assert meta["input_sha256"] == sha(
        f"reviews {sha(reviews.read_bytes())}\nfeedback {sha(log.read_bytes())}\n".encode()
    )


def test_impressions_become_interactions_only_when_asked(tmp_path):
    rows = choices()
    shown = [event("impression", f"u{n % 30}", "i-shown", T0 + 10**9 + n) for n in range(40)]
    log = write_lines(tmp_path / "log.jsonl", [*as_events(rows), *shown])
    out, meta = prepare(tmp_path, log=log)
    assert "i-shown" not in read_processed(out)["items"]
    assert meta["feedback"]["events"]["impression"] == 40 and meta["feedback"]["kept"] == len(rows)
    assert meta["feedback"]["files"][0]["name"] == "log.jsonl"

    out, meta = prepare(tmp_path, "all", log=log, feedback_events=tuple(EventType))
    assert "i-shown" in read_processed(out)["items"]
    assert meta["feedback"]["kept"] == len(rows) + 40
    assert meta["feedback"]["ratings"]["impression"] == 0.0


def test_a_torn_last_line_is_counted_and_skipped(tmp_path):
    rows = choices()
    whole = json.dumps(event("click", "u1", "i-torn", T0 + 10**9)).encode()
    for name, tail in (("half", whole[:25]), ("whole", whole)):
        path = write_lines(tmp_path / name / "events-1.jsonl", as_events(rows))
        path.write_bytes(path.read_bytes() + tail)  # a crash before the newline went out
        parsed = feedback.read_feedback(path.parent, ["click", "purchase"])
        assert parsed.invalid == {Reason.PARTIAL_LINE.value: 1}
        assert parsed.n_kept == len(rows) and parsed.files[0].lines == len(rows) + 1
        assert f"{path}:{len(rows) + 1}: no newline at the end" in parsed.notes[0]
    _, meta = prepare(tmp_path, log=tmp_path / "whole")
    assert meta["dropped"]["invalid"]["partial_last_line"] == 1


def test_invalid_events_are_counted_by_reason_alike_on_both_paths(tmp_path, monkeypatch):
    """Junk that parses (the strict polars path) and junk that does not (line by line) is
    counted as the exact rules say; tiny blocks make clean and dirty blocks alternate."""
    monkeypatch.setattr(reader, "BLOCK_BYTES", 2048)
    odd = [
        event("like", "u1", "i1", T0),
        event(None, "u1", "i1", T0),
        {k: v for k, v in event("click", "u1", "i1", T0).items() if k != "type"},
        event("click", "", "i1", T0),
        event("click", "u1", "", T0),
        event("click", "u1", None, T0),
        event("click", "u1", "i1", None),
        event(7, "u1", "i1", T0),
        event("click", 7, "i1", T0),
        event("click", "u1", "i1", "soon"),
        event("click", "u1", "i1", T0 + 0.5),  # a float time: kept, as for reviews
    ]
    rows = choices(300)
    lines = []
    for n, row in enumerate(as_events(rows)):
        lines.append(row)
        if n % 20 == 0:
            lines.append(odd[(n // 20) % len(odd)])
        if n % 45 == 0:
            lines.append(JUNK[(n // 45) % len(JUNK)])
    path = write_lines(tmp_path / "events-1.jsonl", lines)
    parsed = feedback.read_feedback(path, ["click", "purchase"])

    expected = [feedback.classify_event(line) for line in path.read_bytes().splitlines()]
    reasons = [r.value for r in expected if isinstance(r, Reason)]
    assert parsed.invalid == dict(zip(*np.unique(reasons, return_counts=True), strict=True))
    assert {Reason.UNKNOWN_EVENT, Reason.MISSING_USER, Reason.NOT_JSON} <= set(reasons)
    kept = [r for r in expected if not isinstance(r, Reason)]
    df = parsed.interactions
    got = list(zip(df["user"].cast(str), df["item"].cast(str), df["timestamp"], strict=True))
    assert got == [(u, i, t) for u, i, t, _ in kept]
    assert parsed.files[0].lines == len(lines)
    assert any("lines skipped" in note and " at line " in note for note in parsed.notes)


def test_gzipped_files_read_like_plain_ones(tmp_path):
    events = as_events(choices())
    plain = write_lines(tmp_path / "plain" / "events-1.jsonl", events)
    packed = tmp_path / "packed" / "events-1.jsonl.gz"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, meta_a = prepare(tmp_path, "a", log=plain.parent)
    b, meta_b = prepare(tmp_path, "b", log=packed.parent)
    assert parquets(a) == parquets(b)
    assert meta_b["feedback"]["files"][0]["name"] == packed.name
    # The content is hashed, not the compressed bytes: gzipping a rotated file changes nothing.
    assert meta_a["input_sha256"] == meta_b["input_sha256"]


def test_refusals_leave_the_previous_output_untouched(tmp_path):
    log = write_lines(tmp_path / "feedback" / "events-1.jsonl", as_events(choices()))
    out, _ = prepare(tmp_path, log=log.parent)
    before = parquets(out) | {"metadata.json": (out / "metadata.json").read_bytes()}
    shown = write_lines(tmp_path / "shown.jsonl", [event("impression", "u", "i", T0)] * 3)
    for kwargs, message in (
        ({}, "nothing to read: set data.input=FILE"),
        ({"log": tmp_path / "nowhere"}, "feedback path does not exist"),
        ({"log": shown}, "no click or purchase event in 3 lines of 1 feedback files"),
        ({"log": log, "feedback_events": ()}, "data.feedback_events must name"),
        ({"log": log, "feedback_events": ("like",)}, "unknown ['like']"),
    ):
        with pytest.raises(RecsysError, match=message.replace("[", r"\[").replace("]", r"\]")):
            prepare(tmp_path, **kwargs)
        assert parquets(out) | {"metadata.json": (out / "metadata.json").read_bytes()} == before
