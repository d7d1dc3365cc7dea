"""recsys-preprocess through the real console script, as a user runs it."""

from __future__ import annotations

import gzip
import json
import subprocess

import pytest

from tests.cli.contract import check_processed_dir
from tests.conftest import BIN
from tests.data.test_feedback import T0, as_events, choices, event
from tests.data.test_pipeline import JUNK
from tests.helpers import write_lines

pytestmark = pytest.mark.slow
OUTPUTS = ("train.parquet", "val.parquet", "test.parquet", "users.parquet", "items.parquet")


def preprocess(cwd, *overrides):
    return subprocess.run(
        [BIN / "recsys-preprocess", *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_ok(cwd, src, out, *extra):
    result = preprocess(cwd, f"data.input={src}", f"data.processed_dir={out}", *extra)
    assert result.returncode == 0, result.stderr
    return result


def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def parquet_bytes(directory):
    return {name: (directory / name).read_bytes() for name in OUTPUTS}


def test_generated_data_meets_the_contract(in_tmp, small_reviews_gz):
    result = run_ok(in_tmp, small_reviews_gz, "processed")
    meta = check_processed_dir(in_tmp / "processed")
    assert meta["min_interactions"] == 5 and meta["split"]["kind"] == "temporal"
    assert meta["dropped"]["duplicate"] > 0 and meta["dropped"]["kcore"] > 0
    assert meta["input"]["lines"] == 30_000
    assert "summary" in result.stderr  # the summary table
    # Hydra's run directory keeps the composed config and the stage log
    (run_dir,) = (in_tmp / "logs" / "preprocess" / "runs").iterdir()
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert "k-core: k=5" in (run_dir / "preprocess.log").read_text()


def test_output_is_deterministic_and_schema_independent(in_tmp, small_reviews):
    """The same reviews in the 2014 schema, or in another run, give byte-identical parquet."""
    rows = [json.loads(line) for line in small_reviews.read_text().splitlines()]
    new = in_tmp / "new.jsonl"
    old = in_tmp / "old.jsonl"
    with new.open("w") as fn, old.open("w") as fo:
        for r in rows:
            seconds = r["timestamp"] // 1000
            fn.write(json.dumps({**r, "timestamp": seconds * 1000}) + "\n")
            fo.write(
                json.dumps(
                    {
                        "reviewerID": r["user_id"],
                        "asin": r["parent_asin"],
                        "overall": r["rating"],
                        "unixReviewTime": seconds,
                        "reviewText": r["text"],
                        "summary": r["title"],
                    }
                )
                + "\n"
            )
    run_ok(in_tmp, new, "a")
    run_ok(in_tmp, new, "b")
    run_ok(in_tmp, old, "c")
    assert parquet_bytes(in_tmp / "a") == parquet_bytes(in_tmp / "b")
    assert parquet_bytes(in_tmp / "a") == parquet_bytes(in_tmp / "c")
    meta = json.loads((in_tmp / "c" / "metadata.json").read_text())
    assert meta["input"]["format"] == "amazon-2014"


def test_junk_lines_change_nothing_but_the_counts(in_tmp, small_reviews):
    lines = small_reviews.read_bytes().splitlines()
    dirty = []
    for n, line in enumerate(lines):
        dirty.append(line)
        if n % 500 == 0:
            dirty.append(JUNK[(n // 500) % len(JUNK)])
    (in_tmp / "dirty.jsonl.gz").write_bytes(gzip.compress(b"\n".join(dirty) + b"\n"))
    run_ok(in_tmp, small_reviews, "clean")
    run_ok(in_tmp, "dirty.jsonl.gz", "dirty")
    assert parquet_bytes(in_tmp / "clean") == parquet_bytes(in_tmp / "dirty")
    meta = json.loads((in_tmp / "dirty" / "metadata.json").read_text())
    assert sum(meta["dropped"]["invalid"].values()) == len(dirty) - len(lines)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "does not exist"),
        ("empty.jsonl", b"", "is empty"),
        ("adir", "dir", "is a directory"),
        ("truncated.jsonl.gz", "truncated", "truncated"),
        ("junk.jsonl", b"nope\n[]\n", "no line among the first"),
        (
            "invalid.jsonl",
            b'{"user_id": "u", "parent_asin": "", "timestamp": 1}\n',
            "no valid review",
        ),
    ],
)
def test_bad_input_is_refused_and_loses_nothing(in_tmp, small_reviews, name, content, message):
    run_ok(in_tmp, small_reviews, "processed")
    before = snapshot(in_tmp / "processed")
    bad = in_tmp / name
    if content == "dir":
        bad.mkdir()
    elif content == "truncated":
        bad.write_bytes(gzip.compress(small_reviews.read_bytes())[:50_000])
    elif content is not None:
        bad.write_bytes(content)
    result = preprocess(in_tmp, f"data.input={bad}", "data.processed_dir=processed")
    assert result.returncode == 2
    assert message in result.stderr and str(bad) in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(in_tmp / "processed") == before


def test_nothing_left_after_kcore(in_tmp, small_reviews):
    result = preprocess(
        in_tmp,
        f"data.input={small_reviews}",
        "data.processed_dir=p",
        "data.min_interactions=100000",
    )
    assert result.returncode == 2
    assert "nothing is left after the 100000-core" in result.stderr
    assert not (in_tmp / "p").exists()


def test_leave_last_out_and_options(in_tmp, small_reviews):
    run_ok(in_tmp, small_reviews, "llo", "data.split=leave_last_out", "data.min_interactions=3")
    meta = check_processed_dir(in_tmp / "llo", temporal=False)
    assert meta["split"]["kind"] == "leave_last_out" and meta["min_interactions"] == 3
    assert meta["n_test"] <= meta["n_users"]


def test_config_errors_are_clear(in_tmp, small_reviews):
    missing = preprocess(in_tmp, "data.processed_dir=p")
    assert missing.returncode == 2 and "data.input" in missing.stderr
    assert "data.feedback=PATH" in missing.stderr
    assert "Traceback" not in missing.stderr
    wrong = preprocess(
        in_tmp, f"data.input={small_reviews}", "data.processed_dir=p", "data.split=random"
    )
    assert wrong.returncode == 1 and "temporal, leave_last_out" in wrong.stderr  # Hydra's
    fractions = preprocess(
        in_tmp,
        f"data.input={small_reviews}",
        "data.processed_dir=p",
        "data.val_fraction=0.6",
        "data.test_fraction=0.5",
    )
    assert fractions.returncode == 2 and "below 1" in fractions.stderr
    foreign = in_tmp / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    refused = preprocess(in_tmp, f"data.input={small_reviews}", f"data.processed_dir={foreign}")
    assert refused.returncode == 2 and "not written by recsys" in refused.stderr
    assert (foreign / "notes.txt").read_text() == "keep"
    blocked = preprocess(
        in_tmp, f"data.input={small_reviews}", "data.processed_dir=home/notes.txt/p"
    )
    assert blocked.returncode == 2 and "not a writable directory" in blocked.stderr
    assert "Traceback" not in blocked.stderr


def test_help_and_cfg(in_tmp):
    helped = preprocess(in_tmp, "--help")
    assert helped.returncode == 0 and "data.processed_dir=DIR" in helped.stdout
    cfg = preprocess(in_tmp, "--cfg", "job", "data.processed_dir=x")
    assert cfg.returncode == 0 and "min_interactions: 5" in cfg.stdout


def test_feedback_log_alone_and_beside_reviews(in_tmp, small_reviews):
    """The service's log (plain, gzipped, a torn last line) through the console script."""
    events = as_events(choices())
    log = in_tmp / "feedback"
    first = write_lines(log / "events-20240101T000000-h-1-0.jsonl.gz", events[:400])
    torn = write_lines(log / "events-20240102T000000-h-1-0.jsonl", events[400:])
    torn.write_bytes(torn.read_bytes() + b'{"type": "cli')
    result = preprocess(in_tmp, f"data.feedback={log}", "data.processed_dir=out")
    assert result.returncode == 0, result.stderr
    meta = check_processed_dir(in_tmp / "out")
    assert meta["input"] is None and meta["feedback"]["kept"] == len(events)
    assert [f["name"] for f in meta["feedback"]["files"]] == [first.name, torn.name]
    assert meta["dropped"]["invalid"]["partial_last_line"] == 1
    (run_dir,) = (in_tmp / "logs" / "preprocess" / "runs").iterdir()
    stages = (run_dir / "preprocess.log").read_text()
    assert f"{torn}:{len(events) - 400 + 1}: no newline at the end" in stages
    assert "feedback: 900 click or purchase events kept" in stages

    before = snapshot(in_tmp / "out")
    shown = write_lines(in_tmp / "shown.jsonl", [event("impression", "u", "i", T0)] * 3)
    refused = preprocess(in_tmp, f"data.feedback={shown}", "data.processed_dir=out")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "no click or purchase event in 3 lines" in refused.stderr
    assert str(shown) in refused.stderr and snapshot(in_tmp / "out") == before
    typo = preprocess(
        in_tmp, f"data.feedback={log}", "data.feedback_events=[clik]", "data.processed_dir=t"
    )
    assert typo.returncode == 2 and "unknown ['clik']; choose among impression" in typo.stderr

    both = preprocess(
        in_tmp,
        f"data.input={small_reviews}",
        f"data.feedback={torn}",
        "data.feedback_events=[click,purchase,impression]",
        "data.processed_dir=both",
    )
    assert both.returncode == 0, both.stderr
    meta = check_processed_dir(in_tmp / "both")
    assert meta["input"]["lines"] == 30_000 and meta["feedback"]["files"][0]["name"] == torn.name
    assert meta["feedback"]["event_types"] == ["click", "purchase", "impression"]
