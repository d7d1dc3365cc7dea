"""Read the service's feedback log (POST /feedback) as interactions, counting every skipped line.

The log is a directory of `events-<UTC time>-<host>-<pid>-<seq>.jsonl` files (rotated ones may
be gzipped), one event a line: `type`, `user_id`, `item_id`, `request_id`, `timestamp` (ms),
`model_version`, `served_by`, `received_at`. The service writes each batch of lines with one
call ending in a newline, so a last line without one is a write cut short: it is skipped and
counted (`partial_last_line`), never guessed at.

Not `pl.scan_ndjson` over the files: it stops at the first malformed line (or, with
`ignore_errors`, nulls fields silently), so it could neither count skipped lines by reason
nor tell a torn last line from a whole one. Each file streams instead in blocks of whole lines
(`reader.line_blocks`, plain or gzip) that polars parses under a strict schema and the reviews'
vectorised rules check (`reader.validate_strict`); a block that does not parse strictly goes
line by line through the exact rules (`schema.classify_object`). The service writes every line
itself, so such blocks are rare and the bisection reader.py does for hand-made dumps would not
pay for its code.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recsys.data.options import EventType
from recsys.data.reader import (
    INTERACTION_SCHEMA,
    count_lines,
    is_gzip,
    line_blocks,
    split_lines,
    validate_strict,
)
from recsys.data.schema import (
    FEEDBACK,
    Reason,
    classify_object,
    decode_object,
    mangled_id_suspects,
)
from recsys.errors import RecsysError

STAGE = "reading the feedback log"
TYPE_KEY = "type"
PATTERNS = ("*.jsonl", "*.jsonl.gz")
# The rating each kept event gets, on the reviews' 1-5 scale: a purchase is as strong a
# signal as a top review, a click the weakest positive one, an impression (kept only when
# asked for) none. No model reads ratings today; they are kept for ones that will.
EVENT_RATINGS = {EventType.impression: 0.0, EventType.click: 1.0, EventType.purchase: 5.0}
TYPES = [t.value for t in EVENT_RATINGS]
STRICT_SCHEMA = {TYPE_KEY: pl.String(), **FEEDBACK.polars_schema()}
EVENT_SCHEMA = {**INTERACTION_SCHEMA, TYPE_KEY: pl.String()}
# Skipped lines named by number in the log, per file (the counts cover them all).
NOTED_LINES = 5


@dataclass
class FeedbackFile:
    path: Path
    sha256: str  # of the content, decompressed: gzipping a rotated file does not change it
    lines: int
    events: int  # valid events, of any type


@dataclass
class ParsedFeedback:
    """Kept events as interactions (file order), what every file held, what was skipped."""

    interactions: pl.DataFrame
    root: Path
    files: list[FeedbackFile]
    events: Counter[str]  # valid events by type
    invalid: Counter[str]
    notes: list[str]  # where lines were skipped, for the log

    @property
    def n_kept(self) -> int:
        return self.interactions.height

    @property
    def n_lines(self) -> int:
        return sum(f.lines for f in self.files)


def feedback_files(path: Path) -> list[Path]:
    """The log's files in name order (the service's names sort by start time); one file as is.

    An empty directory is no error: a service that got no feedback yet has written nothing.
    """
    if not path.exists():
        raise RecsysError("feedback path does not exist", path=path, stage=STAGE)
    if not os.access(path, os.R_OK):
        raise RecsysError(
            "feedback path is not readable (permission denied)", path=path, stage=STAGE
        )
    if path.is_file():
        return [path]
    names = {p for pattern in PATTERNS for p in path.glob(pattern) if not p.name.startswith(".")}
    files = sorted((p for p in names if p.is_file()), key=lambda p: p.name)
    unreadable = [p.name for p in files if not os.access(p, os.R_OK)]
    if unreadable:
        raise RecsysError(
            f"feedback files not readable (permission denied): {', '.join(unreadable)}",
            path=path,
            stage=STAGE,
        )
    return files


def classify_event(line: bytes) -> tuple[str, str, int, str] | Reason:
    """One raw log line: its (user, item, timestamp_ms, type), or why it is skipped."""
    obj = decode_object(line)
    if isinstance(obj, Reason):
        return obj
    kind = obj.get(TYPE_KEY)
    if not isinstance(kind, str) or kind not in TYPES:
        return Reason.UNKNOWN_EVENT
    row = classify_object(obj, FEEDBACK)
    return row if isinstance(row, Reason) else (row[0], row[1], row[2], kind)


@dataclass
class _Block:
    frame: pl.DataFrame  # EVENT_SCHEMA
    invalid: Counter[str]
    bad_lines: list[int]  # 0-based within the block, where known (the line-by-line path)


def _parse_block(block: bytes) -> _Block:
    try:
        raw = pl.read_ndjson(block, schema=STRICT_SCHEMA)
    except (Exception, pl.exceptions.PanicException):  # any failure -> the exact slow path
        raw = None
    if raw is not None and not mangled_id_suspects(raw, (FEEDBACK.user_key, *FEEDBACK.item_keys)):
        # The type first, as in classify_event; String reads any JSON value, none becomes a
        # known type unless it was that very string.
        known = raw.filter(pl.col(TYPE_KEY).is_in(TYPES))
        frame, invalid = validate_strict(known, FEEDBACK, keep=(TYPE_KEY,))
        invalid[Reason.UNKNOWN_EVENT.value] += raw.height - known.height
        invalid[Reason.BLANK.value] += count_lines(block) - raw.height  # skipped by the reader
        return _Block(frame, +invalid, [])

    rows, invalid, bad = [], Counter(), []
    for n, line in enumerate(split_lines(block)):
        result = classify_event(line)
        if isinstance(result, Reason):
            invalid[result.value] += 1
            bad.append(n)
        else:
            rows.append((result[0], result[1], result[2], None, result[3]))
    return _Block(pl.DataFrame(rows, schema=EVENT_SCHEMA, orient="row"), invalid, bad)


@dataclass
class _FileEvents:
    kept: pl.DataFrame  # the kept types' events, EVENT_SCHEMA
    events: Counter[str]  # valid events by type
    invalid: Counter[str]
    info: FeedbackFile


def _read_file(path: Path, kept: list[str], notes: list[str]) -> _FileEvents:
    """One file, block by block; its hash is taken on the way, as no byte is read twice."""
    digest = hashlib.sha256()
    frames, events, invalid = [], Counter(), Counter()
    bad_lines: list[int] = []
    lines = 0
    for block in line_blocks(path, is_gzip(path)):
        digest.update(block)
        if not block.endswith(b"\n"):  # only the last block can lack one: a torn write
            lines += 1
            invalid[Reason.PARTIAL_LINE.value] += 1
            notes.append(f"{path}:{lines}: no newline at the end (a write cut short); skipped")
            continue
        parsed = _parse_block(block)
        events.update(dict(parsed.frame.get_column(TYPE_KEY).value_counts().iter_rows()))
        frames.append(parsed.frame.filter(pl.col(TYPE_KEY).is_in(kept)))
        invalid.update(parsed.invalid)
        bad_lines.extend(lines + 1 + n for n in parsed.bad_lines)
        lines += count_lines(block)
    skipped = Counter({k: v for k, v in invalid.items() if k != Reason.PARTIAL_LINE.value})
    if skipped:
        reasons = ", ".join(f"{k} {v:,}" for k, v in skipped.most_common())
        where = f" at line {', '.join(map(str, bad_lines[:NOTED_LINES]))}" if bad_lines else ""
        more = ", ..." if len(bad_lines) > NOTED_LINES else ""
        notes.append(f"{path}: {skipped.total():,} lines skipped ({reasons}){where}{more}")
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=EVENT_SCHEMA)
    info = FeedbackFile(path, digest.hexdigest(), lines, events.total())
    return _FileEvents(frame, events, invalid, info)


def read_feedback(path: str | os.PathLike[str], event_types: Iterable[str]) -> ParsedFeedback:
    """Every event of the log; those of `event_types` become interactions rated by
    EVENT_RATINGS, in the reviews' frame layout (user, item Categoricals, timestamp, rating)."""
    root = Path(path).expanduser()
    kept = [EventType(t).value for t in event_types]
    ratings = {t.value: r for t, r in EVENT_RATINGS.items()}
    frames, files, events, invalid, notes = [], [], Counter(), Counter(), []
    for file in feedback_files(root):
        read = _read_file(file, kept, notes)
        frames.append(read.kept)
        files.append(read.info)
        events.update(read.events)
        invalid.update(read.invalid)
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=EVENT_SCHEMA)
    interactions = frame.with_columns(
        pl.col(TYPE_KEY).replace_strict(ratings, return_dtype=pl.Float32).alias("rating")
    ).drop(TYPE_KEY)
    return ParsedFeedback(interactions, root, files, events, invalid, notes)
