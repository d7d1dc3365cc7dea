"""Raw reviews -> processed directory (docs/REFERENCE.md, Processed directory), with a stage
log and a summary table."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import recsys
from recsys.data import pipeline
from recsys.data.fingerprint import FileFingerprint
from recsys.data.io import atomic_dir, check_writable_parent, write_json
from recsys.data.options import PrepareOptions, SplitKind
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


def _ts_range(df: pl.DataFrame) -> list[int] | None:
    if df.height == 0:
        return None
    ts = df.get_column("timestamp")
    return [int(ts.min()), int(ts.max())]


def prepare_dataset(
    input: str | os.PathLike[str],
    processed_dir: str | os.PathLike[str],
    options: PrepareOptions,
    console: Console | None = None,
    fingerprint: FileFingerprint | None = None,
) -> dict[str, Any]:
    """Run every stage and swap the result into `processed_dir`; returns metadata.json's content.

    `fingerprint` is the input's hash already under way (see `recsys.data.fingerprint`).
    """
    console = console or Console(stderr=True)
    source, target = Path(input).expanduser(), Path(processed_dir).expanduser()
    options.validate()
    check_input_file(source)  # before the progress display stats it
    if source.resolve().is_relative_to(target.resolve()):
        raise RecsysError(
            "the input file lies inside data.processed_dir, which is replaced on "
            "every run; move the input or choose another output directory",
            path=source,
        )
    check_writable_parent(target)
    log = StageLog(console)

    parsed = _read(source, console, fingerprint)
    log.done("read", f"{parsed.n_valid:,} valid reviews ({parsed.schema.name})")

    deduped = pipeline.dedupe_earliest(parsed.interactions)
    duplicates = parsed.n_valid - deduped.height
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
            path=source,
            stage="k-core filtering",
        )

    try:
        if options.split == SplitKind.temporal:
            split = pipeline.temporal_split(core.frame, options.val_fraction, options.test_fraction)
        else:
            split = pipeline.leave_last_out_split(core.frame)
    except RecsysError as err:
        err.path = source
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
    invalid = sum(parsed.invalid.values())
    reasons = ", ".join(f"{k} {v:,}" for k, v in parsed.invalid.most_common())
    log.done(
        "input",
        f"{parsed.n_lines:,} lines, {invalid:,} skipped"
        + (f" ({reasons})" if reasons else "")
        + f", sha256 {parsed.sha256[:12]}",
    )
    metadata = build_metadata(source, parsed, core, split, indexed, options)

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


def build_metadata(
    source: Path,
    parsed: ParsedInput,
    core: pipeline.KCoreResult,
    split: pipeline.Split,
    indexed: pipeline.Indexed,
    options: PrepareOptions,
) -> dict[str, Any]:
    """metadata.json: the counts docs/REFERENCE.md (Processed directory) names, plus provenance
    and per-split ranges."""
    cold = split.cold_val + split.cold_test
    return {
        "schema_version": SCHEMA_VERSION,
        "recsys_version": recsys.__version__,
        "input_sha256": parsed.sha256,
        "input": {
            "path": str(source.resolve()),
            "format": parsed.schema.name,
            "lines": parsed.n_lines,
            "valid": parsed.n_valid,
        },
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
            "val_fraction": options.val_fraction,
            "test_fraction": options.test_fraction,
            **{f"{name}_range": _ts_range(getattr(indexed, name)) for name in SPLIT_NAMES},
        },
        "kcore_rounds": core.rounds,
        "dropped": {
            "invalid": {reason.value: parsed.invalid.get(reason.value, 0) for reason in Reason},
            "duplicate": parsed.n_valid - core.before,
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
