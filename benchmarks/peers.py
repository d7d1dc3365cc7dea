"""recsys beside RecBole 1.2.1 and implicit 0.7.3 on the same splits (`make bench-peers`).

Every contender trains on the project's own processed splits (no re-split) with 2 threads and
the same patience (5 epochs without a better val NDCG@10, up to --max-epochs), and is judged
by the project's own metric code (recsys.evaluation.metrics) on each one's top-100 unseen
items: train masked for val, train + val for test. recsys runs through its real CLI; the peers
run in their own venvs (benchmarks/.work/venvs/, built by the Makefile) through the workers in
benchmarks/peers/, which exchange plain .npy files with this script (peers/peer_files.py).

Reported per contender: in-loop training triplets/s, process wall time, the val NDCG@10 curve,
best val NDCG@10, test NDCG@10 / Recall@20 of the best epoch, and the wall time (from the start
of fitting, validation included) until val NDCG@10 first reached 95% of its best.
Results: benchmarks/results/peers.json. --quick (2 epochs, 1 seed, a small synthetic set unless
data is given) checks the plumbing and writes benchmarks/.work/results/peers.json instead.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import (
    DRIFT_SPEC,
    ROOT,
    WORK,
    console,
    machine,
    spread,
    synthetic_processed,
    write_result,
)
from rich.console import Console
from rich.table import Table

from recsys.data.evalsets import EvalSet
from recsys.data.processed import ProcessedData, load_processed
from recsys.evaluation.metrics import RankingMetrics, hits_at

PEERS_DIR = ROOT / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS_DIR))  # peer_files: the exchange format, also the workers' module
from peer_files import EVAL_SPLITS, load_top, write_inputs  # noqa: E402

VENVS = WORK / "venvs"
RUNS = WORK / "peers"
KS = (10, 20)
TOPK = 100  # items each peer exports per user: more than max(KS), for later cut-offs
TO_QUALITY = 0.95  # time to reach this share of the contender's own best val NDCG@10
METRIC_BATCH = 4096  # users per metric update
# --quick trains on a small synthetic set: RecBole's NeuMF alone needs minutes per full-ranking
# pass over the demo data (it scores every user-item pair through the MLP).
QUICK_SPEC = {"n_interactions": 30_000, "n_users": 2_000, "n_items": 500}
DEMO_INTERACTIONS = 300_000


@dataclass(frozen=True)
class Contender:
    library: str  # recsys | recbole | implicit
    model: str  # what the library calls it


CONTENDERS = {
    "recsys-neumf": Contender("recsys", "neumf"),
    "recsys-mf": Contender("recsys", "mf"),
    "recsys-ials": Contender("recsys", "ials"),
    "recsys-ease": Contender("recsys", "ease"),
    # The budgeted Optuna search (hparams_search=neumf_optuna), given the wall time of the
    # best peer's whole grid (--tuned-budget); it runs after the others.
    "recsys-neumf-tuned": Contender("recsys-tuned", "neumf"),
    "recbole-neumf": Contender("recbole", "NeuMF"),
    "recbole-bpr": Contender("recbole", "BPR"),
    "recbole-ease": Contender("recbole", "EASE"),
    "implicit-bpr": Contender("implicit", "bpr"),
    "implicit-als": Contender("implicit", "als"),
}
# --grid: each peer is run at every point of its grid (x seeds) and selected on val NDCG@10,
# as a user tuning it would; recsys' contenders run their shipped defaults only.
GRIDS: dict[str, list[dict[str, float]]] = {
    "recbole-bpr": [{"lr": lr} for lr in (5e-4, 1e-3, 2e-3, 5e-3)],
    "recbole-neumf": [{"lr": lr} for lr in (5e-4, 1e-3, 2e-3)],
    "recbole-ease": [{"reg_weight": w} for w in (50.0, 100.0, 250.0, 500.0, 1000.0)],
    "implicit-bpr": [
        {"learning_rate": lr, "regularization": reg}
        for lr in (0.01, 0.05, 0.1)
        for reg in (0.001, 0.01)
    ],
    "implicit-als": [
        {"regularization": reg, "alpha": alpha}
        for reg in (0.01, 0.1, 1.0, 10.0)
        for alpha in (1.0, 10.0, 40.0)
    ],
}
CLOSED_FORM = {"recsys-ease", "recbole-ease"}  # the same result for every seed: run seed 0


# --- the project's metrics on a peer's ranking -----------------------------------------------
def ranking_metrics(top: np.ndarray, evalset: EvalSet, n_items: int) -> dict[str, float]:
    """Recall@K / NDCG@K of exported top lists (rows aligned with evalset.users), with recsys'
    own code; refuses a ranking that recommends a masked (already seen) item."""
    users = evalset.users
    if top.shape[0] != users.numel():
        raise ValueError(f"{top.shape[0]} ranked users, expected {users.numel()}")
    metric = RankingMetrics(KS)
    for lo in range(0, users.numel(), METRIC_BATCH):
        batch = evalset.batch(users[lo : lo + METRIC_BATCH])
        items = torch.from_numpy(top[lo : lo + METRIC_BATCH]).long()
        valid = items >= 0  # -1 pads a short list
        items = items.clamp(min=0)
        seen = hits_at(items, valid, batch["seen_rows"], batch["seen_items"], n_items)
        if bool(seen.any()):
            raise ValueError(f"{int(seen.sum())} recommended items were masked (seen) ones")
        hits = hits_at(items, valid, batch["rel_rows"], batch["rel_items"], n_items)
        metric.update(hits, batch["n_relevant"])
    return {k: float(v) for k, v in metric.compute().items() if k != "n_users"}


class Plateau:
    """Lightning's EarlyStopping rule (mode max, min_delta 0), which recsys-train uses: stop
    after `patience` validations without a strictly better value."""

    def __init__(self, patience: int) -> None:
        self.patience, self.best, self.wait = patience, -float("inf"), 0

    def update(self, value: float) -> tuple[bool, bool]:
        """(new best, stop)"""
        improved = value > self.best
        self.best, self.wait = (value, 0) if improved else (self.best, self.wait + 1)
        return improved, self.wait >= self.patience


# --- data --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bench:
    processed: Path
    data: ProcessedData
    evalsets: dict[str, EvalSet]
    inputs: Path  # what the peer workers read


def prepare(processed: Path) -> Bench:
    """The splits as recsys' datamodule sees them, and the same as .npy for the peers."""
    data = load_processed(processed)
    tr, va, te = data.train, data.val, data.test
    evalsets = {  # as in recsys.data.datamodule: val masks train, test masks train + val
        "val": EvalSet.build([(tr.users, tr.items)], (va.users, va.items), data.n_users),
        "test": EvalSet.build(
            [(tr.users, tr.items), (va.users, va.items)], (te.users, te.items), data.n_users
        ),
    }
    inputs = RUNS / "inputs"
    pairs = {
        name: torch.stack([split.users, split.items], 1).numpy()
        for name, split in (("train", tr), ("val", va), ("test", te))
    }
    eval_users = {split: evalsets[split].users.numpy() for split in EVAL_SPLITS}
    write_inputs(inputs, pairs, eval_users, data.n_users, data.n_items)
    return Bench(processed, data, evalsets, inputs)


# --- running one contender ------------------------------------------------------------------
def child_env(threads: int, **extra: str) -> dict[str, str]:
    # OMP/MKL fix torch's intra-op threads at `threads` for the recsys CLI too (it has no flag).
    return os.environ | {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def peer_python(library: str) -> Path:
    python = VENVS / library / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} is missing: `make bench-peers` builds the peer venvs")
    return python


def run_logged(cmd: list[str], run_dir: Path, env: dict[str, str], timeout: float) -> float:
    """Run to completion with output in run_dir/log.txt; returns the wall seconds."""
    start = time.perf_counter()
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.run(cmd, cwd=run_dir, env=env, stdout=log, stderr=log, timeout=timeout)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}; see {run_dir / 'log.txt'}")
    return wall


def run_recsys(
    c: Contender, bench: Bench, seed: int, run_dir: Path, args: Any, params: dict
) -> dict:
    cmd = [
        str(Path(sys.executable).parent / "recsys-train"),
        f"data.processed_dir={bench.processed}",
        f"hydra.run.dir={run_dir}",
        "logger=csv",
        "callbacks.rich_progress_bar=null",
        f"seed={seed}",
        f"trainer.max_epochs={args.max_epochs}",
        f"callbacks.early_stopping.patience={args.patience}",
    ]
    if c.model != "neumf":
        cmd.append(f"model={c.model}")
    # Only when asked: the project's own default batch size may differ (e.g. `auto`).
    if args.batch_size is not None:
        cmd.append(f"data.batch_size={args.batch_size}")
    if args.lr is not None:
        cmd.append(f"model.optimizer.lr={args.lr}")
    cmd += [f"{key}={value}" for key, value in params.items()]
    wall = run_logged(cmd, run_dir, child_env(args.threads), args.timeout)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    curve = recsys_curve(run_dir)
    return {
        "wall_s": wall,
        "train_triplets_per_s": metrics.get("train/samples_per_sec"),
        "curve": curve,
        "best_epoch": max(curve, key=lambda e: e["val_ndcg@10"])["epoch"] if curve else None,
        "val_ndcg@10_recsys_metric": metrics.get("val/ndcg@10"),
        "test_ndcg@10": metrics.get("test/ndcg@10"),
        "test_recall@20": metrics.get("test/recall@20"),
        "params": {"batch_size": recsys_setting(run_dir, "data", "batch_size")},
    }


def recsys_curve(run_dir: Path) -> list[dict[str, Any]]:
    """Per-epoch val NDCG@10 and `time/fit_s` from the CSV logger (older versions of recsys
    lack `time/fit_s`: the curve then has no times). Lightning may log an epoch's values on
    separate rows, so they are gathered by epoch."""
    files = sorted((run_dir / "csv").glob("version_*/metrics.csv"))
    if not files:
        return []
    by_epoch: dict[int, dict[str, float]] = {}
    with open(files[-1], newline="") as f:
        for row in csv.DictReader(f):
            if not row.get("epoch"):
                continue
            values = by_epoch.setdefault(int(float(row["epoch"])), {})
            for key in ("val/ndcg@10", "time/fit_s"):
                if row.get(key):
                    values[key] = float(row[key])
    return [
        {"epoch": epoch + 1, "fit_s": v.get("time/fit_s"), "val_ndcg@10": v["val/ndcg@10"]}
        for epoch, v in sorted(by_epoch.items())
        if "val/ndcg@10" in v
    ]


def recsys_setting(run_dir: Path, group: str, key: str) -> Any:
    """A value of the composed config Hydra saved with the run."""
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "config.yaml"
    return OmegaConf.select(OmegaConf.load(path), f"{group}.{key}") if path.exists() else None


def run_recbole(
    c: Contender, bench: Bench, seed: int, run_dir: Path, args: Any, params: dict
) -> dict:
    params = dict(params)
    lr = params.pop("lr", args.lr or 1e-3)
    cmd = [
        str(peer_python("recbole")),
        str(PEERS_DIR / "recbole_worker.py"),
        f"--inputs={bench.inputs}",
        f"--out={run_dir}",
        f"--model={c.model}",
        f"--max-epochs={args.max_epochs}",
        f"--patience={args.patience}",
        f"--batch-size={args.batch_size or 1024}",
        f"--lr={lr}",
        f"--seed={seed}",
        f"--threads={args.threads}",
        f"--topk={TOPK}",
        "--cross-check",
        *(f"--param={key}={value}" for key, value in params.items()),
    ]
    if args.recbole_eval_batch_size:
        cmd.append(f"--eval-batch-size={args.recbole_eval_batch_size}")
    env = child_env(args.threads, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    wall = run_logged(cmd, run_dir, env, args.timeout)
    out = json.loads((run_dir / "result.json").read_text())
    test = ranking_metrics(load_top(run_dir, "test"), bench.evalsets["test"], bench.data.n_items)
    val = ranking_metrics(load_top(run_dir, "val"), bench.evalsets["val"], bench.data.n_items)
    recbole_test = out["recbole_test"] or {}
    return {
        # RecBole's own test evaluation ran only for the cross-check: not part of its time.
        "wall_s": wall - out["cross_check_s"],
        "train_triplets_per_s": out["triplets"] / out["train_s"],
        "curve": out["epochs"],  # val NDCG@10 from RecBole's own evaluator
        "best_epoch": out["best_epoch"],
        "val_ndcg@10_recsys_metric": val["ndcg@10"],
        "test_ndcg@10": test["ndcg@10"],
        "test_recall@20": test["recall@20"],
        "cross_check": {
            "test_ndcg@10_recbole_evaluator": recbole_test.get("ndcg@10"),
            "test_recall@20_recbole_evaluator": recbole_test.get("recall@20"),
            "seconds": out["cross_check_s"],
        },
        "params": out["params"],
    }


def run_implicit(
    c: Contender, bench: Bench, seed: int, run_dir: Path, args: Any, params: dict
) -> dict:
    cmd = [
        str(peer_python("implicit")),
        str(PEERS_DIR / "implicit_worker.py"),
        f"--inputs={bench.inputs}",
        f"--out={run_dir}",
        f"--model={c.model}",
        "--factors=64",
        f"--max-epochs={args.max_epochs}",
        f"--seed={seed}",
        f"--threads={args.threads}",
        f"--topk={TOPK}",
        *(f"--param={key}={value}" for key, value in params.items()),
    ]
    # implicit parallelises itself; a BLAS thread pool on top slows ALS down (its own advice).
    env = child_env(args.threads, OPENBLAS_NUM_THREADS="1")
    plateau = Plateau(args.patience)
    start = time.perf_counter()
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=run_dir,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            bufsize=1,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            # The judge: each epoch's val ranking is scored here, with recsys' metric code.
            for line in proc.stdout:
                top = np.load(json.loads(line)["top"])
                ndcg = ranking_metrics(top, bench.evalsets["val"], bench.data.n_items)["ndcg@10"]
                best, stop = plateau.update(ndcg)
                proc.stdin.write(json.dumps({"ndcg": ndcg, "best": best, "stop": stop}) + "\n")
                proc.stdin.flush()
            proc.stdin.close()
            rc = proc.wait(timeout=args.timeout)
        finally:
            if proc.poll() is None:  # the judge failed: the worker would wait for it forever
                proc.kill()
                proc.wait()
    wall = time.perf_counter() - start
    if rc != 0:
        raise RuntimeError(f"exit {rc}; see {run_dir / 'log.txt'}")
    out = json.loads((run_dir / "result.json").read_text())
    test = ranking_metrics(load_top(run_dir, "test"), bench.evalsets["test"], bench.data.n_items)
    return {
        "wall_s": wall,
        # BPR: one triplet per train interaction and epoch; ALS: interactions swept per second.
        "train_triplets_per_s": out["triplets"] / out["train_s"],
        "curve": out["epochs"],
        "best_epoch": out["best_epoch"],
        "val_ndcg@10_recsys_metric": plateau.best,
        "test_ndcg@10": test["ndcg@10"],
        "test_recall@20": test["recall@20"],
        "params": out["params"],
    }


def run_recsys_tuned(
    c: Contender, bench: Bench, seed: int, run_dir: Path, args: Any, params: dict
) -> dict:
    """recsys-train -m hparams_search=<model>_optuna within params["budget_s"] seconds: the
    sweeper selects on val, then tests and registers the best trial (its last job)."""
    import yaml

    budget = float(params["budget_s"])
    sweep = run_dir / "sweep"
    cmd = [
        str(Path(sys.executable).parent / "recsys-train"), "-m",
        f"hparams_search={c.model}_optuna", f"data.processed_dir={bench.processed}",
        f"hydra.sweep.dir={sweep}", f"hydra.sweeper.timeout={budget:.0f}",
        f"hydra.sweeper.sampler.seed={seed}", "hydra.sweeper.n_trials=1000",
    ]  # fmt: skip
    env = child_env(args.threads, MLFLOW_TRACKING_URI=f"sqlite:///{run_dir / 'mlflow.db'}")
    wall = run_logged(cmd, run_dir, env, budget + args.timeout)
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    final = sweep / str(sum(results["trials"].values())) / "metrics.json"
    metrics = json.loads(final.read_text())
    return {
        "wall_s": wall,
        "budget_s": budget,
        "trials": results["trials"],
        "best_params": results["best_params"],
        "train_triplets_per_s": metrics.get("train/samples_per_sec"),
        "curve": [],
        "best_epoch": None,
        "val_ndcg@10_recsys_metric": metrics.get("val/ndcg@10"),
        "test_ndcg@10": metrics.get("test/ndcg@10"),
        "test_recall@20": metrics.get("test/recall@20"),
        "params": {"budget_s": budget},
    }


RUNNERS = {
    "recsys": run_recsys,
    "recsys-tuned": run_recsys_tuned,
    "recbole": run_recbole,
    "implicit": run_implicit,
}


def run_one(
    name: str, bench: Bench, seed: int, args: Any, params: dict | None = None, point: int = 0
) -> dict[str, Any]:
    contender = CONTENDERS[name]
    params = params or {}
    run_dir = RUNS / "runs" / f"{name}-p{point}-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # no stale checkpoints, CSV versions or tops
    run_dir.mkdir(parents=True)
    console.print(f"[bold]{name}[/] {params} seed {seed}: running (log: {run_dir / 'log.txt'})")
    try:
        row = RUNNERS[contender.library](contender, bench, seed, run_dir, args, params)
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as err:
        console.print(f"[red]{name} seed {seed} failed: {err}")
        return {"seed": seed, "error": str(err)}
    row = {"seed": seed, "grid_point": params, **row, **to_quality(row["curve"])}
    if row["best_val_ndcg@10"] is None:  # no curve (the tuned search): its selected value
        row["best_val_ndcg@10"] = row["val_ndcg@10_recsys_metric"]
    console.print(
        f"{name} seed {seed}: {row['wall_s']:.1f}s wall, "
        f"test NDCG@10 {row['test_ndcg@10']:.4f}, {len(row['curve'])} epochs"
    )
    return row


def to_quality(curve: list[dict[str, Any]]) -> dict[str, Any]:
    """Best val NDCG@10 and when (epoch, seconds since fitting began) 95% of it was reached."""
    if not curve:
        return {"epochs_run": 0, "best_val_ndcg@10": None, "epoch_to_95pct": None}
    best = max(e["val_ndcg@10"] for e in curve)
    first = next(e for e in curve if e["val_ndcg@10"] >= TO_QUALITY * best)
    return {
        "epochs_run": len(curve),
        "best_val_ndcg@10": best,
        "epoch_to_95pct": first["epoch"],
        "time_to_95pct_s": first["fit_s"],  # None where the curve has no times
    }


# --- report ----------------------------------------------------------------------------------
SUMMARY_KEYS = {  # key -> digits
    "wall_s": 1,
    "train_triplets_per_s": 0,
    "epochs_run": 0,
    "best_epoch": 0,
    "best_val_ndcg@10": 4,
    "test_ndcg@10": 4,
    "test_recall@20": 4,
    "time_to_95pct_s": 1,
}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    summary: dict[str, Any] = {"runs_ok": len(ok), "runs_failed": len(runs) - len(ok)}
    for key, digits in SUMMARY_KEYS.items():
        values = [float(r[key]) for r in ok if r.get(key) is not None]
        summary[key] = spread(values, digits) if values else None
    cross = [r["cross_check"] for r in ok if r.get("cross_check")]
    if cross:
        summary["cross_check"] = {
            "test_ndcg@10_recsys_metric": spread([r["test_ndcg@10"] for r in ok], 6),
            "test_ndcg@10_recbole_evaluator": spread(
                [c["test_ndcg@10_recbole_evaluator"] for c in cross], 6
            ),
        }
    return summary


def select_point(entry: dict[str, Any]) -> None:
    """The grid point with the best mean val NDCG@10 (recsys' metric) over its seeds is the
    contender's result; the whole grid's wall time is what a user tuning it would spend."""

    def val(point: dict[str, Any]) -> float:
        values = [r["val_ndcg@10_recsys_metric"] for r in point["runs"] if "error" not in r]
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else -float("inf")

    points = entry["points"]
    best = max(points, key=val)
    ok = [r for r in best["runs"] if "error" not in r]
    every = [r for point in points for r in point["runs"] if "error" not in r]
    entry["selected"] = best["params"]
    entry["summary"] = {
        **summarise(best["runs"]),
        "grid_points": len(points),
        "grid_wall_s": round(sum(r["wall_s"] for r in every), 1),
        "test_ndcg@10_best_seed": max((r["test_ndcg@10"] for r in ok), default=None),
        "test_recall@20_best_seed": max((r["test_recall@20"] for r in ok), default=None),
    }


def tuned_budget(report: dict[str, Any], budget: str) -> float:
    """Seconds for the budgeted search: a number, or `best-peer-grid`, the whole grid time of
    the peer with the best selected test NDCG@10."""
    if budget != "best-peer-grid":
        return float(budget)
    peers = [
        entry["summary"] for name, entry in report["contenders"].items()
        if not name.startswith("recsys") and entry.get("summary", {}).get("runs_ok")
    ]  # fmt: skip
    if not peers:
        raise SystemExit("--tuned-budget best-peer-grid needs at least one peer that ran")
    best = max(peers, key=lambda s: s["test_ndcg@10"]["median"])
    return float(best["grid_wall_s"])


def table(report: dict[str, Any]) -> Table:
    d = report["data"]
    s = report["settings"]
    out = Table(
        title=f"{d['n_users']:,} users x {d['n_items']:,} items, {d['n_train']:,} train rows; "
        f"{s['threads']} threads, up to {s['max_epochs']} epochs, patience {s['patience']}; "
        f"median over {len(s['seeds'])} seed(s); NDCG/Recall by recsys' metric code"
    )
    cols = (
        "contender",
        "grid",
        "triplets/s",
        "wall s",
        "epochs (best)",
        "best val NDCG@10",
        "test NDCG@10",
        "test Recall@20",
        "best-seed test NDCG@10",
        "to 95% (s)",
    )
    for col in cols:
        out.add_column(col, justify="left" if col == "contender" else "right")

    def med(summary: dict[str, Any], key: str, fmt: str) -> str:
        value = summary.get(key)
        return format(value["median"], fmt) if value else "-"

    for name, entry in report["contenders"].items():
        sm = entry["summary"]
        if not sm["runs_ok"]:
            out.add_row(name, "failed", *[""] * (len(cols) - 2))
            continue
        best_seed = sm.get("test_ndcg@10_best_seed")
        out.add_row(
            name,
            f"{sm.get('grid_points', 1)} ({sm.get('grid_wall_s', 0):.0f} s)",
            med(sm, "train_triplets_per_s", ",.0f"),
            med(sm, "wall_s", ".1f"),
            f"{med(sm, 'epochs_run', '.0f')} ({med(sm, 'best_epoch', '.0f')})",
            med(sm, "best_val_ndcg@10", ".4f"),
            med(sm, "test_ndcg@10", ".4f"),
            med(sm, "test_recall@20", ".4f"),
            format(best_seed, ".4f") if best_seed is not None else "-",
            med(sm, "time_to_95pct_s", ".1f"),
        )
    return out


NOTES = [
    "triplets/s: recsys = train/samples_per_sec of metrics.json (in-loop); RecBole = train "
    "interactions x negatives x epochs / time inside Trainer._train_epoch; implicit = train "
    "interactions x epochs / time inside fit() (ALS has no triplets: interactions swept/s).",
    "wall s: the whole process (start-up, data, training, validation, test ranking); RecBole's "
    "own test evaluation (the cross-check) is subtracted.",
    "best val NDCG@10 and its curve: recsys and implicit by recsys' metric code, RecBole by its "
    "own full-ranking evaluator (as its early stopping uses); val_ndcg@10_recsys_metric "
    "re-scores the selected epoch with recsys' code for every contender.",
    "to 95%: seconds since fitting began, validation included, until val NDCG@10 first reached "
    "95% of the contender's own best (MLPerf-style time to quality).",
    "batch: RecBole NeuMF is pointwise (BCE): its batch holds the positives and their negatives "
    "as rows, so it is doubled to give the same positives per step as a BPR batch; implicit "
    "trains per sample (Hogwild SGD / ALS) and has no batch size.",
    "RecBole's early stopping counts a tie as an improvement; Lightning's and the judge's do not.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS)
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per contender")
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="default: 1024 for RecBole, the project's own for recsys",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="default: 1e-3 for RecBole, the project's own for recsys",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--grid", action="store_true", help="run each peer over its grid (GRIDS), select on val"
    )
    parser.add_argument(
        "--tuned-budget",
        default="best-peer-grid",
        help="seconds for recsys-neumf-tuned, or best-peer-grid: the best peer's grid time",
    )
    parser.add_argument(
        "--drift", action="store_true", help="the synthetic dataset with popularity drift"
    )
    parser.add_argument(
        "--label", help="results go to peers[_N]_<label>.json instead of peers[_N].json"
    )
    parser.add_argument(
        "--recbole-eval-batch-size",
        type=int,
        # RecBole's own default (4096 scores) ranks one user per batch at the demo's 4,942
        # items, and a NeuMF validation pass then takes minutes: 1M scores is about what
        # recsys scores per batch (1,024 users x the catalogue, in chunks).
        default=1 << 20,
        help="RecBole eval_batch_size in scores (RecBole's own default: 4096)",
    )
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--n-interactions",
        type=int,
        default=None,
        help="synthetic reviews (default 300,000: the `make demo` data)",
    )
    data.add_argument("--processed-dir", type=Path, help="any recsys-preprocess output instead")
    parser.add_argument("--n-users", type=int, help="synthetic users (default: the demo's)")
    parser.add_argument("--n-items", type=int, help="synthetic items (default: the demo's)")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per run")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 epochs, 1 seed, and a small synthetic set unless data is given",
    )
    args = parser.parse_args()
    # A killed benchmark must not leave a worker training on: SIGTERM unwinds like Ctrl-C, and
    # subprocess.run / the judge's `finally` kill the child.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    spec = {k: v for k, v in (("n_users", args.n_users), ("n_items", args.n_items)) if v}
    if args.drift:
        spec |= DRIFT_SPEC
    if args.quick:
        args.max_epochs, args.seeds = 2, 1
        if args.n_interactions is None and args.processed_dir is None:
            spec = QUICK_SPEC | spec
            args.n_interactions = spec.pop("n_interactions")
    torch.set_num_threads(args.threads)

    n_interactions = args.n_interactions or DEMO_INTERACTIONS
    processed = args.processed_dir or synthetic_processed(n_interactions, **spec)
    bench = prepare(processed.resolve())
    seeds = list(range(args.seeds))
    # One results file per dataset, so the demo's and the 10x run's stand side by side.
    default_data = args.processed_dir is None and n_interactions == DEMO_INTERACTIONS
    name_of_result = "peers" if default_data or args.quick else f"peers_{n_interactions}"
    if args.drift:
        name_of_result += "_drift"
    if args.label:
        name_of_result += f"_{args.label}"
    report: dict[str, Any] = {
        "machine": machine(),
        "data": {
            "processed_dir": str(processed),
            "n_users": bench.data.n_users,
            "n_items": bench.data.n_items,
            "n_train": len(bench.data.train),
            "n_val": len(bench.data.val),
            "n_test": len(bench.data.test),
            "val_users": bench.evalsets["val"].users.numel(),
            "test_users": bench.evalsets["test"].users.numel(),
        },
        "settings": {
            "max_epochs": args.max_epochs,
            "patience": args.patience,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "recbole_eval_batch_size": args.recbole_eval_batch_size,
            "threads": args.threads,
            "seeds": seeds,
            "grid": args.grid,
            "grids": {n: GRIDS[n] for n in args.contenders if args.grid and n in GRIDS},
            "topk_exported": TOPK,
            "quick": args.quick,
        },
        "notes": NOTES,
        "contenders": {n: {**vars(CONTENDERS[n])} for n in args.contenders},
    }
    # Seeds outermost: each round runs every contender, so load drift on a busy machine
    # spreads over all of them instead of hitting one. The budgeted search runs last: its
    # budget is the peers' grid time.
    fixed = [n for n in args.contenders if CONTENDERS[n].library != "recsys-tuned"]
    tuned = [n for n in args.contenders if CONTENDERS[n].library == "recsys-tuned"]
    for name in args.contenders:
        grid = GRIDS.get(name, [{}]) if args.grid else [{}]
        report["contenders"][name]["points"] = [{"params": p, "runs": []} for p in grid]
    path = None
    for seed in seeds:
        for name in fixed:
            if seed > 0 and name in CLOSED_FORM:
                continue
            entry = report["contenders"][name]
            for i, point in enumerate(entry["points"]):
                point["runs"].append(run_one(name, bench, seed, args, point["params"], i))
                point["summary"] = summarise(point["runs"])
            select_point(entry)
            path = write_result(name_of_result, report, quick=args.quick)  # saved as it goes
    for name in tuned:
        budget = tuned_budget(report, args.tuned_budget)
        entry = report["contenders"][name]
        entry["points"] = [{"params": {"budget_s": budget}, "runs": []}]
        entry["points"][0]["runs"].append(run_one(name, bench, 0, args, {"budget_s": budget}))
        select_point(entry)
        path = write_result(name_of_result, report, quick=args.quick)
    console.print(f"wrote {path}")
    Console(width=150).print(table(report))
    for name, entry in report["contenders"].items():
        cross = entry["summary"].get("cross_check")
        if cross:
            Console().print(
                f"{name} test NDCG@10: {cross['test_ndcg@10_recsys_metric']['median']:.6f} "
                f"(recsys metric) vs {cross['test_ndcg@10_recbole_evaluator']['median']:.6f} "
                "(RecBole's full-ranking evaluator)"
            )


if __name__ == "__main__":
    main()
