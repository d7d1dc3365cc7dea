"""The output directory of a batch job (docs/REFERENCE.md, Batch top-K).

    part-000000.parquet ...        user_id, rank, item_id, score: one block per user
    fallback_users.parquet         the ids answered with popular items, and why
    manifest.json                  model, input_sha256, k, n_users, n_rows, parts, timing
    manifest-shard-I-of-N.json     one per shard of a sharded job
    _job.json                      what the parts are of: the resume and mix-up guard

Parts are numbered over all users, whatever the sharding, so shards can share one directory
and their union is file for file the unsharded job. Every file is written atomically (a
temporary name, then a rename): after a SIGKILL a part is either whole or absent, and a rerun
with the same arguments writes only the absent ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from recsys.data.io import atomic_file
from recsys.errors import RecsysError

JOB_FILE = "_job.json"
MANIFEST = "manifest.json"
FALLBACK_FILE = "fallback_users.parquet"
PART = re.compile(r"^part-(\d{6})\.parquet$")
JOB_FORMAT = 1


def part_name(index: int) -> str:
    return f"part-{index:06d}.parquet"


def shard_manifest_name(shard: int, n_shards: int) -> str:
    return f"manifest-shard-{shard}-of-{n_shards}.json"


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if match is None or not int(match[1]) < int(match[2]):
            raise RecsysError(
                f"shard='{text}' is not I/N with 0 <= I < N, e.g. shard=0/4 .. shard=3/4"
            )
        return cls(int(match[1]), int(match[2]))

    def parts(self, n_parts: int) -> list[int]:
        """This shard's parts: interleaved, so shards get equal shares of any user order."""
        return list(range(self.index, n_parts, self.count))


def prepare(output_dir: Path, job: dict[str, Any]) -> set[int]:
    """Check that `output_dir` is new, empty, or holds parts of this same job; record the job
    there; return the indices of the parts already written. Nothing is touched on refusal."""
    if output_dir.exists() and not output_dir.is_dir():
        raise RecsysError(
            "exists and is not a directory: choose another output_dir", path=output_dir
        )
    recorded = _recorded_job(output_dir)
    if recorded is None:
        foreign = [p.name for p in _entries(output_dir) if not p.name.startswith(".")]
        if foreign:
            raise RecsysError(
                "output_dir holds files that no recsys-recommend job wrote "
                f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}): "
                "choose a new or empty directory",
                path=output_dir,
            )
    elif recorded != job:
        changed = sorted(k for k in job.keys() | recorded.keys() if job.get(k) != recorded.get(k))
        detail = "; ".join(f"{k}: {recorded.get(k)!r} there, {job.get(k)!r} now" for k in changed)
        raise RecsysError(
            f"output_dir holds the parts of another job ({detail}). Rerun with that job's "
            "arguments to resume it, or choose a new output_dir (or delete this one)",
            path=output_dir,
        )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RecsysError(f"cannot create output_dir: {err}", path=output_dir) from err
    if recorded is None:
        write_json(output_dir / JOB_FILE, job)
    return {int(m[1]) for p in _entries(output_dir) if (m := PART.match(p.name))}


def remove_stale_temporaries(output_dir: Path, parts: list[int]) -> None:
    """Half-written files a killed run of these parts left behind (other shards' are theirs)."""
    names = {part_name(i) for i in parts}
    for path in output_dir.glob(".part-*.tmp"):
        if path.name[1:].split(".parquet.")[0] + ".parquet" in names:
            path.unlink(missing_ok=True)


def write_part(output_dir: Path, index: int, frame: pl.DataFrame) -> None:
    with atomic_file(output_dir / part_name(index)) as fh:
        frame.write_parquet(fh, compression="zstd", statistics=True)


def write_fallback(output_dir: Path, frame: pl.DataFrame) -> None:
    with atomic_file(output_dir / FALLBACK_FILE) as fh:
        frame.write_parquet(fh)


def part_rows(output_dir: Path, index: int) -> int:
    """Rows of a written part, read from its parquet footer."""
    return int(pl.scan_parquet(output_dir / part_name(index)).select(pl.len()).collect().item())


def write_json(path: Path, payload: dict[str, Any]) -> None:
    with atomic_file(path, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True)
        fh.write("\n")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _recorded_job(output_dir: Path) -> dict[str, Any] | None:
    path = output_dir / JOB_FILE
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError) as err:
        message = f"unreadable {JOB_FILE}: {err}; choose a new output_dir"
        raise RecsysError(message, path=path) from err


def _entries(output_dir: Path) -> list[Path]:
    return sorted(output_dir.iterdir()) if output_dir.is_dir() else []
