"""Batch top-K: the real `recsys-recommend` scoring every user of a synthetic bundle.

The bundle (MF with 64-dim embeddings, and the default NeuMF) is written straight from random
weights (speed does not depend on training) by the same `write_bundle` as `recsys-package`,
with ~20 seen items per user drawn by a power-law popularity, into benchmarks/.work/batch/
and reused by later runs of the same size. Each run launches the console script as a
subprocess on a fresh output directory and measures its wall time and peak memory: RSS summed
over the process and its spawned workers (sampled every 0.2 s; shared library pages count once
per process, so the sum is an upper bound), and the largest single process's peak (VmHWM).

For comparison, the evaluation path's kernel (`masked_topk` on batches of 1024 users with
their seen items masked, as `recsys-eval` ranks) runs in this process on a sample of the same
bundle's users, at one worker's thread count: a worker's share of the batch throughput (users
over the subprocess's wall time, start-up included) should be at least 80% of it; the same
ratio from the job's own clock (manifest.json `timing`) is reported beside it.

Targets on 2 cores, MF, 1M users x 100k items, k=100: <= 10 min wall and <= 4 GB peak RSS
(tree); NeuMF is reported. Results: benchmarks/results/batch_scoring.json (--label adds a
suffix; --quick writes benchmarks/.work/results/ instead) and a table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# As `make` exports it, before torch loads OpenMP here and in the subprocesses: spinning
# OpenMP threads slow everything down on a shared 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from common import WORK, build_neumf, console, machine, write_result
from rich.console import Console
from rich.table import Table

from recsys.evaluation.ranking import masked_topk
from recsys.models.mf import MF
from recsys.packaging.bundle import BundleParts, load_bundle, read_info, write_bundle
from recsys.sparse import csr_rows

try:
    import psutil
except ImportError:  # /proc is read directly instead
    psutil = None

RUNS = WORK / "batch"
TARGET_WALL_S = 600.0
TARGET_RSS_GB = 4.0
TARGET_RATIO = 0.8
# The sizes the wall and memory targets are set for (MF); NeuMF is reported.
TARGET_SIZE = {"users": 1_000_000, "items": 100_000, "k": 100}
EVAL_BATCH = 1024  # users per masked_topk call, as recsys-eval's default eval.batch_size
SAMPLE_EVERY_S = 0.2
GB = 1024**3


def cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """What recsys-recommend gives each worker without threads=: the CPUs shared out."""
    return max(1, cpus() // workers)


# ----------------------------------------------------------------------------- the bundle


def seen_csr(
    n_users: int, n_items: int, per_user: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(indptr int64, indices int32) with `per_user` draws per user by a power-law item
    popularity (weight rank^-0.7), duplicates dropped, each row's items sorted."""
    cdf = np.cumsum(np.arange(1, n_items + 1, dtype=np.float64) ** -0.7)
    cdf /= cdf[-1]
    draws = np.empty((n_users, per_user), dtype=np.int32)
    for lo in range(0, n_users, 100_000):  # bounded temporaries (float64 uniforms)
        hi = min(n_users, lo + 100_000)
        u = rng.random((hi - lo, per_user))
        draws[lo:hi] = np.minimum(np.searchsorted(cdf, u), n_items - 1)
    draws.sort(axis=1)
    keep = np.ones(draws.shape, dtype=bool)
    keep[:, 1:] = draws[:, 1:] != draws[:, :-1]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    return indptr, draws[keep]  # row-major: row by row, sorted within each


def build_net(model: str, n_users: int, n_items: int) -> torch.nn.Module:
    if model == "mf":
        torch.manual_seed(0)
        return MF(n_users, n_items, embedding_dim=64)
    return build_neumf(n_users, n_items)


def bundle_dir(
    model: str, n_users: int, n_items: int, seen_per_user: int, ann: bool = False
) -> Path:
    """The bundle of this size, written once: a bundle of another size or seen-per-user count
    under the same name is rebuilt. With `ann`, the weights are serve_catalogue.py's
    trained-like ones (random vectors have no neighbourhoods for an index to find) and the
    bundle gets recsys-package's ANN index (defaults: HNSW at 100k items, recall floor)."""
    target = RUNS / f"{model}-{n_users}x{n_items}{'-ann' if ann else ''}" / "bundle"
    if (target / "recsys.json").exists():
        info = read_info(target)
        if (info["n_users"], info["n_items"], info.get("seen_per_user")) == (
            n_users,
            n_items,
            seen_per_user,
        ):
            console.print(f"{model}: reusing {target}")
            return target
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    indptr, indices = seen_csr(n_users, n_items, seen_per_user, rng)
    popularity = np.bincount(indices, minlength=n_items)
    if ann:
        from serve_catalogue import build_model

        net = build_model(model, n_users, n_items, 256, 0.45, 0)[0]
    else:
        net = build_net(model, n_users, n_items).eval()
    parts = BundleParts(
        net=net,
        user_ids=[f"u{i:07d}" for i in range(n_users)],
        item_ids=[f"i{i:07d}" for i in range(n_items)],
        seen_indptr=torch.from_numpy(indptr),
        seen_indices=torch.from_numpy(indices),
        popularity=torch.from_numpy(popularity),
        info={
            "source_kind": "benchmark",
            "source": "benchmarks/batch_scoring.py (random weights)",
            "seen_per_user": seen_per_user,
        },
    )
    del indptr, indices, popularity
    partial = target.with_name("bundle.partial")  # a killed build leaves no half bundle
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    partial.mkdir(parents=True)
    write_bundle(parts, partial)
    del parts, net
    gc.collect()
    if ann:
        from recsys.packaging.options import AnnOptions
        from recsys.packaging.store import add_ann_index

        info = add_ann_index(partial, AnnOptions())
        if info is None:
            raise SystemExit(f"{model}: no ANN index for {n_items:,} items (min_items)")
    partial.rename(target)
    size = sum(p.stat().st_size for p in target.iterdir()) / GB
    console.print(f"{model}: wrote {target} ({size:.2f} GB) in {time.perf_counter() - start:.1f}s")
    return target


# ----------------------------------------------------------------- the evaluation kernel


@torch.inference_mode()
def eval_throughput(path: Path, k: int, n_sample: int, threads: list[int]) -> dict[int, dict]:
    """Users/s of masked_topk over batches of EVAL_BATCH sampled users (seen items masked),
    at each thread count, on the bundle's net (item side precomputed, as batch scoring has
    it). The bundle is gone when this returns, before the batch runs start."""
    bundle = load_bundle(path, "cpu")
    net, indptr, indices = bundle.net, bundle.seen_indptr, bundle.seen_indices

    def rank(batch: torch.Tensor) -> None:
        seen_rows, seen_items = csr_rows(indptr, indices, batch)
        masked_topk(net, batch, seen_rows, seen_items, k)

    g = torch.Generator().manual_seed(1)
    n_sample = min(n_sample, net.n_users)
    users = torch.randperm(net.n_users, generator=g)[:n_sample].sort().values
    batches = users.split(EVAL_BATCH)
    before = torch.get_num_threads()
    out: dict[int, dict] = {}
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            rank(batches[0])  # warm-up
            start = time.perf_counter()
            for batch in batches:
                rank(batch)
            seconds = time.perf_counter() - start
            out[n_threads] = {
                "threads": n_threads,
                "users": n_sample,
                "seconds": round(seconds, 3),
                "users_per_s": round(n_sample / seconds, 1),
            }
            console.print(
                f"eval path, {n_threads} thread(s): {n_sample:,} users in {seconds:.1f}s "
                f"({n_sample / seconds:,.0f} users/s), load {os.getloadavg()[0]:.1f}"
            )
    finally:
        torch.set_num_threads(before)
    return out


# ---------------------------------------------------------------------- memory sampling


def _proc_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces
        children.setdefault(ppid, []).append(int(entry))
    return children


def _proc_status(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes; zeros once the process is gone."""
    values = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, *rest = line.split()
            if key in values:
                values[key] = int(rest[0]) * 1024
    except OSError:
        pass
    return values["VmRSS:"], values["VmHWM:"]


def tree_pids(pid: int) -> list[int]:
    if psutil is not None:
        try:
            root = psutil.Process(pid)
            return [pid, *(p.pid for p in root.children(recursive=True))]
        except psutil.NoSuchProcess:
            return []
    children, pids, todo = _proc_children(), [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(children.get(p, []))
    return pids


class TreeMemory(threading.Thread):
    """Samples the RSS of a process and all its descendants until `stop()`."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.done = pid, threading.Event()
        self.peak_tree = self.peak_proc = self.max_procs = self.samples = 0

    def sample(self) -> None:
        pids = tree_pids(self.pid)
        total = 0
        for pid in pids:
            if psutil is not None:
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    rss = 0
                hwm = _proc_status(pid)[1] if os.path.exists("/proc") else rss
            else:
                rss, hwm = _proc_status(pid)
            total += rss
            self.peak_proc = max(self.peak_proc, rss, hwm)
        self.peak_tree = max(self.peak_tree, total)
        self.max_procs = max(self.max_procs, len(pids))
        self.samples += 1

    def run(self) -> None:
        while not self.done.wait(SAMPLE_EVERY_S):
            self.sample()

    def stop(self) -> None:
        self.done.set()
        self.join()


# ------------------------------------------------------------------------------ one run


def recommend_command() -> str:
    beside = Path(sys.executable).parent / "recsys-recommend"
    found = str(beside) if beside.exists() else shutil.which("recsys-recommend")
    if found is None:
        raise SystemExit("recsys-recommend is not installed: run `make setup`")
    return found


def batch_run(
    path: Path, k: int, workers: int, retrieval: str, keep_output: bool
) -> dict[str, Any]:
    """recsys-recommend over every user of the bundle, as a user would run it."""
    run_dir = path.parent / f"run-k{k}-w{workers}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    output_dir = run_dir / "output"
    cmd = [
        recommend_command(),
        f"model={path}",
        f"output_dir={output_dir}",
        f"k={k}",
        f"workers={workers}",
        "device=cpu",
        f"retrieval={retrieval}",
        f"hydra.run.dir={run_dir / 'hydra'}",
    ]
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
    console.print(f"running {' '.join(cmd[1:-1])}")
    with open(run_dir / "stdout.log", "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, env=env)  # stderr: its progress, to ours
        memory = TreeMemory(proc.pid)
        memory.sample()
        memory.start()
        rc = proc.wait()
        wall = time.perf_counter() - start
        memory.stop()
    if rc != 0:
        raise SystemExit(f"recsys-recommend exited with {rc}; its stdout: {run_dir}/stdout.log")
    manifest = json.loads((output_dir / "manifest.json").read_text())
    timing = manifest["timing"]
    output_gb = sum(p.stat().st_size for p in output_dir.iterdir()) / GB
    if not keep_output:
        shutil.rmtree(output_dir)
    n_users = manifest["n_users"]
    return {
        "retrieval": manifest["retrieval"],
        "n_users": n_users,
        "n_rows": manifest["n_rows"],
        "rows_expected": n_users * k,
        "n_fallback_users": manifest["n_fallback_users"],
        "threads": timing["threads"],
        "wall_s": round(wall, 2),
        "users_per_s": round(n_users / wall, 1),
        "job_s": timing["seconds"],
        "job_users_per_s": timing["users_per_sec"],
        "peak_rss_tree_gb": round(memory.peak_tree / GB, 3),
        "peak_rss_max_proc_gb": round(memory.peak_proc / GB, 3),
        "processes": memory.max_procs,
        "rss_samples": memory.samples,
        "output_gb": round(output_gb, 3),
    }


def verdict(model: str, row: dict[str, Any]) -> dict[str, Any]:
    """Each target's pass/fail (None where the target does not apply: wall and memory are
    set for MF only)."""
    checks: dict[str, Any] = {
        "per_worker_ratio": row["per_worker_ratio"] >= TARGET_RATIO,
        "all_rows_written": row["n_rows"] == row["rows_expected"],
    }
    if model == "mf":
        checks["wall_s"] = row["wall_s"] <= TARGET_WALL_S
        checks["peak_rss_tree_gb"] = row["peak_rss_tree_gb"] <= TARGET_RSS_GB
    else:
        checks["wall_s"] = checks["peak_rss_tree_gb"] = None
    return checks


def table(report: dict[str, Any]) -> Table:
    out = Table(
        title="recsys-recommend over every user (batch) vs the eval kernel (masked_topk): "
        f"targets for MF at {TARGET_SIZE['users']:,} x {TARGET_SIZE['items']:,}, "
        f"k={TARGET_SIZE['k']}: wall <= {TARGET_WALL_S:.0f} s, tree RSS <= {TARGET_RSS_GB} GB, "
        f"per worker >= {TARGET_RATIO:.0%} of eval"
    )
    cols = (
        "model", "users", "items", "k", "workers", "threads", "wall s", "users/s",
        "tree RSS GB", "max proc GB", "eval users/s", "per worker / eval", "(job clock)", "ok",
    )  # fmt: skip
    for col in cols:
        out.add_column(col, justify="left" if col == "model" else "right")
    for row in report["runs"]:
        checks = [v for v in row["checks"].values() if v is not None]
        out.add_row(
            row["model"],
            f"{row['users']:,}",
            f"{row['items']:,}",
            str(row["k"]),
            str(row["workers"]),
            str(row["threads"]),
            f"{row['wall_s']:.1f}",
            f"{row['users_per_s']:,.0f}",
            f"{row['peak_rss_tree_gb']:.2f}",
            f"{row['peak_rss_max_proc_gb']:.2f}",
            f"{row['eval_users_per_s']:,.0f}",
            f"{row['per_worker_ratio']:.2f}",
            f"{row['per_worker_ratio_job']:.2f}",
            "yes" if all(checks) else "NO",
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=["mf", "neumf"], default=["mf", "neumf"])
    parser.add_argument("--users", type=int, default=TARGET_SIZE["users"])
    parser.add_argument("--items", type=int, default=TARGET_SIZE["items"])
    parser.add_argument("--k", type=int, default=TARGET_SIZE["k"])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seen-per-user", type=int, default=20)
    parser.add_argument(
        "--retrieval",
        default="exact",
        help="recsys-recommend's retrieval= (default exact: what the eval kernel computes; "
        "ann: trained-like weights from serve_catalogue.py, indexed as recsys-package does)",
    )
    parser.add_argument(
        "--eval-users", type=int, default=20_000, help="users sampled for the eval kernel"
    )
    parser.add_argument(
        "--keep-output", action="store_true", help="keep the parquet parts of each run"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 100k users x 20k items, saved under benchmarks/.work/results/",
    )
    parser.add_argument("--label", help="results go to batch_scoring_<label>.json")
    args = parser.parse_args()
    if args.quick:
        args.users, args.items = 100_000, 20_000
    name = f"batch_scoring_{args.label}" if args.label else "batch_scoring"
    report: dict[str, Any] = {
        "machine": machine() | {"cpus_available": cpus(), "psutil": psutil is not None},
        "size": {"users": args.users, "items": args.items, "k": args.k},
        "seen_per_user": args.seen_per_user,
        "targets": {
            "sizes": TARGET_SIZE,
            "mf_wall_s_max": TARGET_WALL_S,
            "mf_peak_rss_tree_gb_max": TARGET_RSS_GB,
            "per_worker_ratio_min": TARGET_RATIO,
            "at_target_size": {"users": args.users, "items": args.items, "k": args.k}
            == TARGET_SIZE,
        },
        "eval_path": f"masked_topk on batches of {EVAL_BATCH} sampled users, seen items "
        "masked, in this process at one worker's thread count",
        "runs": [],
    }
    path = None
    for model in args.models:
        bundle = bundle_dir(
            model, args.users, args.items, args.seen_per_user, args.retrieval == "ann"
        )
        threads = sorted({threads_per_worker(w) for w in args.workers}, reverse=True)
        evals = eval_throughput(bundle, args.k, args.eval_users, threads)
        gc.collect()
        for workers in args.workers:
            measured = batch_run(bundle, args.k, workers, args.retrieval, args.keep_output)
            ev = evals.get(measured["threads"]) or evals[threads_per_worker(workers)]
            row = {
                "model": model,
                "users": args.users,
                "items": args.items,
                "k": args.k,
                "workers": workers,
                **measured,
                "eval_users_per_s": ev["users_per_s"],
                "eval": ev,
                "per_worker_ratio": round(measured["users_per_s"] / workers / ev["users_per_s"], 3),
                # The same from the job's own clock (manifest timing: no interpreter start-up).
                "per_worker_ratio_job": round(
                    measured["job_users_per_s"] / workers / ev["users_per_s"], 3
                ),
            }
            row["checks"] = verdict(model, row)
            row["target_met"] = all(v for v in row["checks"].values() if v is not None)
            report["runs"].append(row)
            console.print(
                f"{model} workers={workers}: {row['wall_s']:.1f}s wall, "
                f"{row['users_per_s']:,.0f} users/s, tree RSS {row['peak_rss_tree_gb']:.2f} GB, "
                f"per worker / eval {row['per_worker_ratio']:.2f}"
            )
            report["target_met"] = all(r["target_met"] for r in report["runs"])
            report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            path = write_result(name, report, quick=args.quick)
    console.print(f"wrote {path}")
    Console(width=160).print(table(report))


if __name__ == "__main__":
    main()
