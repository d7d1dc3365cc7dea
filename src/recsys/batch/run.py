"""The batch job: every requested user's top-K into parquet parts, resumable and sharded.

Everything that can be wrong with the arguments (model, users file, output directory, shard,
device) is checked before the first byte is written. Parts are scored in-process, or by
`workers` spawned processes that each load the model once; memory is bounded by one part per
process, whatever the number of users.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import torch

from recsys.batch import layout
from recsys.batch.options import ScoringOptions
from recsys.batch.score import score_users
from recsys.batch.users import ALL, file_sha256, ids_sha256, read_user_ids
from recsys.devices import resolve_device
from recsys.errors import RecsysError
from recsys.models.checkpoint import CheckpointError
from recsys.packaging.bundle import ITEMS_FILE, USERS_FILE, Bundle, load_bundle
from recsys.packaging.locate import bundle_digest, open_model

# Without a terminal (logs, CI, Kubernetes) progress is a line at most this often.
LOG_EVERY_S = 10.0


def recommend_all(
    model: str, output_dir: str | Path, opts: ScoringOptions, processed_dir: str | None = None
) -> dict[str, Any]:
    """Run (or resume) the job; returns the manifest of this process's parts."""
    output_dir = Path(output_dir)
    shard, device = _check(opts)
    started, clock = datetime.now(UTC), time.perf_counter()
    with open_model(model, processed_dir) as located:
        bundle = _load(located.bundle_dir, device if opts.workers == 1 else "cpu", opts.retrieval)
        retrieval = bundle.retrieval
        model_users = pl.read_parquet(located.bundle_dir / USERS_FILE)["user_id"]
        if opts.users == ALL:
            ids, input_sha = model_users, ids_sha256(model_users)
        else:
            ids, input_sha = read_user_ids(opts.users), file_sha256(opts.users)
        job = {
            "format": layout.JOB_FORMAT,
            "model_sha256": bundle_digest(located.bundle_dir),
            "users": opts.users if opts.users == ALL else str(Path(opts.users).resolve()),
            "input_sha256": input_sha,
            "n_users": ids.len(),
            "k": opts.k,
            "exclude_seen": opts.exclude_seen,
            "retrieval": retrieval,
            "part_users": opts.part_users,
        }
        n_parts = math.ceil(ids.len() / opts.part_users)
        mine = shard.parts(n_parts)
        done = layout.prepare(output_dir, job)
        todo = [i for i in mine if i not in done]
        layout.remove_stale_temporaries(output_dir, todo)
        fallback = _fallback_users(ids, model_users, bundle)
        layout.write_fallback(output_dir, fallback)
        print(
            f"recsys-recommend: {located.name} -> {output_dir}: {ids.len():,} users in "
            f"{n_parts} parts; shard {shard.index}/{shard.count} has {len(mine)}, "
            f"{len(mine) - len(todo)} already written",
            file=sys.stderr,
            flush=True,
        )
        users_of = {i: ids.slice(i * opts.part_users, opts.part_users) for i in todo}
        _score_parts(bundle, located.bundle_dir, output_dir, users_of, opts, device)
        seconds = time.perf_counter() - clock
        scored = sum(s.len() for s in users_of.values())
        timing = {
            "started_at": started.isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "users_scored": scored,
            "users_per_sec": round(scored / seconds, 1) if seconds > 0 else None,
            "parts_scored": len(todo),
            "parts_resumed": len(mine) - len(todo),
            "workers": opts.workers,
            "threads": opts.threads or max(1, _cpus() // opts.workers),
            "device": str(device),
        }
        common = {
            "model": located.name,
            "model_requested": model,
            **{key: job[key] for key in ("model_sha256", "users", "input_sha256", "k")},
            "exclude_seen": opts.exclude_seen,
            "retrieval": retrieval,
        }
        manifest = _manifest(output_dir, common, ids.len(), mine, opts.part_users, fallback)
        manifest.update(shard=f"{shard.index}/{shard.count}", timing=timing)
        if shard.count == 1:
            layout.write_json(output_dir / layout.MANIFEST, manifest)
        else:
            name = layout.shard_manifest_name(shard.index, shard.count)
            layout.write_json(output_dir / name, manifest)
            _merge_if_complete(output_dir, common, ids.len(), n_parts, opts.part_users, fallback)
    return manifest


def _check(opts: ScoringOptions):
    if opts.k < 1:
        raise RecsysError(f"k={opts.k}: ask for at least one item per user")
    for key in ("workers", "part_users", "batch_users", "threads"):
        if getattr(opts, key) is not None and getattr(opts, key) < 1:
            raise RecsysError(f"{key}={getattr(opts, key)}: must be at least 1")
    try:
        device = resolve_device(opts.device)
    except ValueError as err:
        raise RecsysError(f"device={opts.device}: {err}") from err
    return layout.Shard.parse(opts.shard), device


def _load(bundle_dir: Path, device: torch.device | str, retrieval: str) -> Bundle:
    try:
        return load_bundle(bundle_dir, device, str(retrieval))
    except CheckpointError as err:
        raise RecsysError(str(err)) from err


def _fallback_users(ids: pl.Series, model_users: pl.Series, bundle: Bundle) -> pl.DataFrame:
    """The requested ids answered with popular items: `unknown` to the model, or known
    without any interaction (`no_history`)."""
    indptr = bundle.seen_indptr.cpu()
    history = pl.DataFrame({"user_id": model_users, "history": (indptr[1:] > indptr[:-1]).numpy()})
    joined = ids.to_frame("user_id").join(history, on="user_id", how="left", maintain_order="left")
    return joined.filter(~pl.col("history").fill_null(False)).select(
        "user_id",
        reason=pl.when(pl.col("history").is_null())
        .then(pl.lit("unknown"))
        .otherwise(pl.lit("no_history")),
    )


def _score_parts(
    bundle: Bundle,
    bundle_dir: Path,
    output_dir: Path,
    users_of: dict[int, pl.Series],
    opts: ScoringOptions,
    device: torch.device,
) -> None:
    progress = _Progress(sum(s.len() for s in users_of.values()))
    args = (opts.k, opts.exclude_seen, opts.batch_users)
    threads = opts.threads or max(1, _cpus() // opts.workers)
    if opts.workers == 1 or len(users_of) <= 1:
        if bundle.device != device:  # loaded on the CPU for workers, and one part is left
            bundle = _load(bundle_dir, device, opts.retrieval)
        _set_threads(bundle, threads)
        item_ids = pl.read_parquet(bundle_dir / ITEMS_FILE)["item_id"]
        for index, user_ids in users_of.items():
            _write(bundle, item_ids, output_dir, index, user_ids, *args)
            progress.advance(user_ids.len())
        progress.close()
        return
    context = multiprocessing.get_context("spawn")  # fork after OpenMP has started can hang
    with ProcessPoolExecutor(
        opts.workers,
        context,
        initializer=_init_worker,
        initargs=(str(bundle_dir), str(device), threads, opts.retrieval),
    ) as pool:
        pending = {
            pool.submit(_worker_part, str(output_dir), index, user_ids, *args): user_ids.len()
            for index, user_ids in users_of.items()
        }
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()  # a worker's error ends the job (written parts stay)
                progress.advance(pending.pop(future))
    progress.close()


def _write(bundle, item_ids, output_dir, index, user_ids, k, exclude_seen, batch_users) -> None:
    frame = score_users(bundle, user_ids, k, exclude_seen, batch_users, item_ids)
    layout.write_part(output_dir, index, frame)


_WORKER: dict[str, Any] = {}


def _init_worker(bundle_dir: str, device: str, threads: int, retrieval: str) -> None:
    _WORKER["bundle"] = _load(Path(bundle_dir), device, retrieval)
    _set_threads(_WORKER["bundle"], threads)
    _WORKER["item_ids"] = pl.read_parquet(Path(bundle_dir) / ITEMS_FILE)["item_id"]


def _worker_part(output_dir: str, index: int, user_ids: pl.Series, *args) -> None:
    _write(_WORKER["bundle"], _WORKER["item_ids"], Path(output_dir), index, user_ids, *args)


def _set_threads(bundle: Bundle, threads: int) -> None:
    torch.set_num_threads(threads)
    if bundle.ann is not None:
        import faiss

        faiss.omp_set_num_threads(threads)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _manifest(
    output_dir: Path,
    common: dict[str, Any],
    n_users: int,
    parts: list[int],
    part_users: int,
    fallback: pl.DataFrame,
) -> dict[str, Any]:
    entries = [
        {
            "file": layout.part_name(i),
            "users": min(part_users, n_users - i * part_users),
            "rows": layout.part_rows(output_dir, i),
        }
        for i in parts
    ]
    return {
        **common,
        "n_users": sum(e["users"] for e in entries),
        "n_rows": sum(e["rows"] for e in entries),
        "n_fallback_users": fallback.height,
        "fallback_users": layout.FALLBACK_FILE,
        "parts": entries,
    }


def _merge_if_complete(output_dir, common, n_users, n_parts, part_users, fallback) -> None:
    """The job's manifest.json, once every part of every shard is in this directory (shards
    writing elsewhere each keep their own manifest-shard file)."""
    written = {int(m[1]) for p in output_dir.iterdir() if (m := layout.PART.match(p.name))}
    if not written.issuperset(range(n_parts)):
        return
    manifest = _manifest(output_dir, common, n_users, list(range(n_parts)), part_users, fallback)
    shards = sorted(output_dir.glob("manifest-shard-*.json"))
    manifest["timing"] = {"shards": [layout.read_json(p)["timing"] for p in shards]}
    layout.write_json(output_dir / layout.MANIFEST, manifest)


class _Progress:
    """A rich bar with users/s on a terminal; otherwise a line every LOG_EVERY_S seconds."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.last_log = self.start
        self.bar = None
        if sys.stderr.isatty() and total:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("scoring"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("users  {task.fields[rate]} users/s"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.task = self.bar.add_task("score", total=total, rate="-")
            self.bar.start()

    def advance(self, users: int) -> None:
        self.done += users
        now = time.perf_counter()
        rate = f"{self.done / max(now - self.start, 1e-9):,.0f}"
        if self.bar is not None:
            self.bar.update(self.task, advance=users, rate=rate)
        elif now - self.last_log >= LOG_EVERY_S or self.done == self.total:
            self.last_log = now
            line = f"scored {self.done:,}/{self.total:,} users ({rate} users/s)"
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
