"""Raw reviews and/or the service's feedback log -> processed directory (docs/REFERENCE.md,
Processed directory), with a stage log and a summary table."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import recsys
from recsys.data import pipeline
from recsys.data.feedback import EVENT_RATINGS, ParsedFeedback, read_feedback
from recsys.data.feedback import STAGE as FEEDBACK_STAGE
from recsys.data.fingerprint import FileFingerprint
from recsys.data.io import atomic_dir, check_writable_parent, write_json
from recsys.data.options import PrepareOptions, SplitKind
from recsys.data.processed import read_metadata
from recsys.data.reader import ParsedInput, check_input_file, read_interactions
from recsys.data.schema import Reason
from recsys.errors import RecsysError

SCHEMA_VERSION = 1
_logger = logging.getLogger("recsys.stages")
SPLIT_NAMES = ("train", "val", "test")


class StageLog:
    """One line per stage with its count and duration: on stderr (stdout stays for results),
    and in the run's log file through the `recsys.stages` logger (see conf/hydra)."""

    def __init__(self, console: Console):
        self.console = console
        self.rows: list[tuple[str, str, str]] = []
        self._t = time.perf_counter()

    def done(self, stage: str, detail: str) -> None:
        now = time.perf_counter()
        seconds = f"{now - self._t:.2f}s"
        self._t = now
        self.rows.append((stage, detail, seconds))
        self.console.log(f"[bold]{stage}[/]: {detail} [dim]({seconds})[/]")
        _logger.info("%s: %s (%s)", stage, detail, seconds)

    def warn(self, message: str) -> None:
        self.console.log(f"[yellow]{message}[/]")
        _logger.warning("%s", message)


def _read(path: Path, console: Console, fingerprint: FileFingerprint | None) -> ParsedInput:
    size = path.stat().st_size
    progress = Progress(
        TextColumn("reading {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task(path.name, total=None if path.suffix == ".gz" else size)
        return read_interactions(
            path, on_bytes=lambda n: progress.advance(task, n), fingerprint=fingerprint
        )


def boundaries_of(processed_dir: str | None) -> tuple[int, int] | None:
    """(val_start, test_start) of a processed directory's temporal split (data.split_from)."""
    if processed_dir is None:
        return None
    try:
        split = read_metadata(processed_dir).get("split", {})
    except RecsysError as err:
        raise RecsysError(
            f"data.split_from must be a processed directory ({err})", path=processed_dir
        ) from err
    if split.get("kind") != SplitKind.temporal.value:
        raise RecsysError(
            f"data.split_from: its split is {split.get('kind')}, not temporal: it has no time "
            "boundaries to reuse",
            path=processed_dir,
        )
    return int(split["val_start"]), int(split["test_start"])


def _ts_range(df: pl.DataFrame) -> list[int] | None:
    if df.height == 0:
        return None
    ts = df.get_column("timestamp")
    return [int(ts.min()), int(ts.max())]


def _check_inputs(sources: list[Path], target: Path) -> None:
    if not sources:
        raise RecsysError(
            "nothing to read: set data.input=FILE (reviews, .jsonl or .jsonl.gz) and/or "
            "data.feedback=PATH (the service's feedback directory, or one of its files)"
        )
    for source in sources:
        if source.resolve().is_relative_to(target.resolve()):
            raise RecsysError(
                "the input lies inside data.processed_dir, which is replaced on "
                "every run; move the input or choose another output directory",
                path=source,
            )
    check_writable_parent(target)


def _read_feedback(path: Path, options: PrepareOptions, log: StageLog) -> ParsedFeedback:
    events = read_feedback(path, options.feedback_events)
    for note in events.notes:
        log.warn(note)
    kept = " or ".join(options.feedback_events)
    kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(events.events.items())) or "none"
    log.done(
        "feedback",
        f"{events.n_kept:,} {kept} events kept as interactions, of {events.events.total():,} "
        f"valid ({kinds}) in {len(events.files):,} files",
    )
    if events.n_lines == 0:
        log.warn(f"{path}: the feedback log holds no event yet")
    return events


def _no_events(feedback: ParsedFeedback, options: PrepareOptions) -> RecsysError:
    skipped = ", ".join(f"{k} {v:,}" for k, v in feedback.invalid.most_common()) or "none"
    return RecsysError(
        f"no {' or '.join(options.feedback_events)} event in {feedback.n_lines:,} lines of "
        f"{len(feedback.files):,} feedback files (skipped lines: {skipped}); point "
        "data.feedback at the service's log (RECSYS_FEEDBACK_DIR) or widen "
        "data.feedback_events",
        path=feedback.root,
        stage=FEEDBACK_STAGE,
    )


@dataclass
class Inputs:
    """What was read: reviews, the feedback log, or both (never neither)."""

    reviews: ParsedInput | None
    feedback: ParsedFeedback | None

    @cached_property
    def interactions(self) -> pl.DataFrame:
        """Reviews first, then the log's files in name order: the order that breaks ties."""
        parts = (self.reviews, self.feedback)
        return pl.concat([p.interactions for p in parts if p is not None])

    @property
    def n_lines(self) -> int:
        return sum(p.n_lines for p in (self.reviews, self.feedback) if p is not None)

    @property
    def invalid(self) -> Counter[str]:
        """Skipped lines by reason, over every input."""
        return sum((p.invalid for p in (self.reviews, self.feedback) if p is not None), Counter())

    @property
    def sha256(self) -> str:
        """The reviews file's sha256 when it is the only input; else the sha256 of a text
        naming every input in reading order, a `reviews <sha256>` / `feedback <sha256>` line
        each (a feedback file's of its decompressed content)."""
        if self.feedback is None and self.reviews is not None:
            return self.reviews.sha256
        lines = [] if self.reviews is None else [f"reviews {self.reviews.sha256}\n"]
        lines += [f"feedback {f.sha256}\n" for f in self.feedback.files] if self.feedback else []
        return hashlib.sha256("".join(lines).encode()).hexdigest()


def prepare_dataset(
    input: str | os.PathLike[str] | None,
    processed_dir: str | os.PathLike[str],
    options: PrepareOptions,
    console: Console | None = None,
    fingerprint: FileFingerprint | None = None,
    feedback: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Run every stage and swap the result into `processed_dir`; returns metadata.json's content.

    `input` is a reviews file, `feedback` the service's feedback log (a directory or a file);
    either may be None, not both. `fingerprint` is the reviews' hash already under way (see
    `recsys.data.fingerprint`).
    """
    console = console or Console(stderr=True)
    target = Path(processed_dir).expanduser()
    source = None if input is None else Path(input).expanduser()
    log_path = None if feedback is None else Path(feedback).expanduser()
    options.validate()
    boundaries = boundaries_of(options.split_from)  # before any reading: a bad one fails fast
    if source is not None:
        check_input_file(source)  # before the progress display stats it
    _check_inputs([p for p in (source, log_path) if p is not None], target)
    where = source or log_path
    log = StageLog(console)

    reviews = None
    if source is not None:
        reviews = _read(source, console, fingerprint)
        log.done("read", f"{reviews.n_valid:,} valid reviews ({reviews.schema.name})")
    feedback = None if log_path is None else _read_feedback(log_path, options, log)
    inputs = Inputs(reviews, feedback)
    if feedback is not None and inputs.interactions.height == 0:  # reviews: refused on read
        raise _no_events(feedback, options)

    deduped = pipeline.dedupe_earliest(inputs.interactions)
    duplicates = inputs.interactions.height - deduped.height
    log.done("dedupe", f"{duplicates:,} repeated (user, item) rows collapsed to the earliest")

    core = pipeline.kcore(deduped, options.min_interactions)
    log.done(
        "k-core",
        f"k={options.min_interactions}: {core.rounds} rounds, "
        f"{core.removed:,} removed, {core.frame.height:,} left",
    )
    if core.frame.height == 0:
        raise RecsysError(
            f"nothing is left after the {options.min_interactions}-core filter "
            f"({deduped.height:,} interactions before it): no set of users and items has "
            f"{options.min_interactions}+ interactions each; lower data.min_interactions",
            path=where,
            stage="k-core filtering",
        )

    try:
        if options.split == SplitKind.temporal:
            split = pipeline.temporal_split(
                core.frame,
                options.val_fraction,
                options.test_fraction,
                boundaries,
            )
        else:
            split = pipeline.leave_last_out_split(core.frame)
    except RecsysError as err:
        err.path = where
        raise
    split = pipeline.drop_cold(split)
    indexed = pipeline.assign_indices(split, core.frame)
    cold = split.cold_val + split.cold_test
    log.done(
        "split",
        f"{options.split.value}: train {indexed.train.height:,}, "
        f"val {indexed.val.height:,}, test {indexed.test.height:,}; "
        f"{cold:,} cold val/test rows dropped",
    )

    # Resolved last, off the critical path: the line count and the background hash.
    invalid = inputs.invalid
    reasons = ", ".join(f"{k} {v:,}" for k, v in invalid.most_common())
    log.done(
        "input",
        f"{inputs.n_lines:,} lines, {invalid.total():,} skipped"
        + (f" ({reasons})" if reasons else "")
        + f", sha256 {inputs.sha256[:12]}",
    )
    metadata = build_metadata(source, inputs, core, split, indexed, options)

    try:
        with atomic_dir(target) as staging:
            tables = {name: getattr(indexed, name) for name in (*SPLIT_NAMES, "users", "items")}
            # polars releases the GIL while encoding: the five files are written side by side.
            with ThreadPoolExecutor(max_workers=len(tables)) as pool:
                writes = [
                    pool.submit(df.write_parquet, staging / f"{name}.parquet", compression="zstd")
                    for name, df in tables.items()
                ]
                for write in writes:
                    write.result()
            # Written last: its presence marks a complete directory that recsys may replace.
            write_json(staging / "metadata.json", metadata)
    except OSError as err:
        raise RecsysError(
            f"cannot write the output: {err}", path=target, stage="writing the output"
        ) from err
    log.done("write", f"{target}")
    console.print(summary_table(metadata, log))
    return metadata


def _reviews_metadata(source: Path, parsed: ParsedInput) -> dict[str, Any]:
    return {
        "path": str(source.resolve()),
        "format": parsed.schema.name,
        "lines": parsed.n_lines,
        "valid": parsed.n_valid,
    }


def _feedback_metadata(events: ParsedFeedback, options: PrepareOptions) -> dict[str, Any]:
    root = events.root.resolve()
    return {
        "path": str(root),
        "files": [
            {
                "name": str(f.path.resolve().relative_to(root)) if root.is_dir() else f.path.name,
                "sha256": f.sha256,
                "lines": f.lines,
                "events": f.events,
            }
            for f in events.files
        ],
        "lines": events.n_lines,
        "events": {t.value: events.events.get(t.value, 0) for t in EVENT_RATINGS},
        "event_types": [str(t) for t in options.feedback_events],
        "ratings": {str(t): EVENT_RATINGS[t] for t in options.feedback_events},
        "kept": events.n_kept,
        "invalid": dict(events.invalid.most_common()),
    }


def build_metadata(
    source: Path | None,
    inputs: Inputs,
    core: pipeline.KCoreResult,
    split: pipeline.Split,
    indexed: pipeline.Indexed,
    options: PrepareOptions,
) -> dict[str, Any]:
    """metadata.json: the counts docs/REFERENCE.md (Processed directory) names, plus provenance
    and per-split ranges; `input` describes the reviews, `feedback` the feedback log (each
    null when not read)."""
    cold = split.cold_val + split.cold_test
    reviews, feedback, invalid = inputs.reviews, inputs.feedback, inputs.invalid
    return {
        "schema_version": SCHEMA_VERSION,
        "recsys_version": recsys.__version__,
        "input_sha256": inputs.sha256,
        "input": None if source is None or reviews is None else _reviews_metadata(source, reviews),
        "feedback": None if feedback is None else _feedback_metadata(feedback, options),
        "n_users": indexed.users.height,
        "n_items": indexed.items.height,
        "n_train": indexed.train.height,
        "n_val": indexed.val.height,
        "n_test": indexed.test.height,
        "n_train_users": indexed.train.get_column("user_idx").n_unique(),
        "n_train_items": indexed.train.get_column("item_idx").n_unique(),
        "min_interactions": options.min_interactions,
        "split": {
            **split.info,
            "from": None if options.split_from is None else str(Path(options.split_from).resolve()),
            "val_fraction": options.val_fraction,
            "test_fraction": options.test_fraction,
            **{f"{name}_range": _ts_range(getattr(indexed, name)) for name in SPLIT_NAMES},
        },
        "kcore_rounds": core.rounds,
        "dropped": {
            "invalid": {reason.value: invalid.get(reason.value, 0) for reason in Reason},
            "duplicate": inputs.interactions.height - core.before,
            "kcore": core.removed,
            "cold": cold,
            "cold_val": split.cold_val,
            "cold_test": split.cold_test,
        },
    }


def summary_table(metadata: dict[str, Any], log: StageLog) -> Table:
    table = Table(title="recsys-preprocess summary", show_header=True, header_style="bold")
    table.add_column("stage")
    table.add_column("result")
    table.add_column("time", justify="right")
    for stage, detail, seconds in log.rows:
        table.add_row(stage, detail, seconds)
    n = metadata["n_train"] + metadata["n_val"] + metadata["n_test"]
    density = metadata["n_train"] / max(1, metadata["n_users"] * metadata["n_items"])
    table.add_row(
        "result",
        f"{metadata['n_users']:,} users x {metadata['n_items']:,} items, {n:,} interactions, "
        f"train density {density:.2e}",
        f"{sum(float(s[:-1]) for _, _, s in log.rows):.2f}s",
    )
    return table
