"""How the model defaults were chosen: recsys-train variants side by side, over seeds.

    python benchmarks/defaults_study.py --name loss --seeds 3 \\
        --variants "bpr=model.loss=bpr" "softmax=model.loss=softmax"

Each variant is a set of recsys-train overrides (on top of the shipped defaults); every run
trains with early stopping on val NDCG@10 and tests its best epoch. Seeds are the outer loop,
so machine load drifts over all variants alike. Results (saved as they come):
benchmarks/results/defaults_<name>.json with, per variant, each run's val and test metrics,
best epoch and fit seconds to it, and the median / mean over seeds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import DRIFT_SPEC, WORK, console, machine, spread, synthetic_processed, write_result

RUNS = WORK / "defaults"
KEYS = ("val/ndcg@10", "test/ndcg@10", "test/recall@20")


def run(variant: str, overrides: list[str], processed: Path, seed: int, args: Any) -> dict:
    run_dir = RUNS / args.name / f"{variant}-seed{seed}"
    cmd = [
        str(Path(sys.executable).parent / "recsys-train"),
        f"data.processed_dir={processed}", f"hydra.run.dir={run_dir}", "logger=csv",
        "callbacks.rich_progress_bar=null", f"seed={seed}",
        f"trainer.max_epochs={args.max_epochs}", *overrides,
    ]  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=log, timeout=args.timeout)
    if proc.returncode != 0:
        return {"seed": seed, "error": f"exit {proc.returncode}; see {run_dir / 'log.txt'}"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    curve = fit_curve(run_dir)
    best = max(curve, key=lambda e: e[1]) if curve else (None, None, None)
    return {
        "seed": seed,
        **{key: metrics.get(key) for key in KEYS},
        "best_epoch": best[0],
        "fit_s_to_best": best[2],
        "epochs_run": len(curve),
    }


def fit_curve(run_dir: Path) -> list[tuple[int, float, float | None]]:
    """(epoch, val NDCG@10, fit seconds) from the CSV logger."""
    import polars as pl

    files = sorted(run_dir.glob("csv/version_*/metrics.csv"))
    if not files:
        return []
    frame = pl.read_csv(files[-1], infer_schema_length=None)
    cols = [c for c in ("val/ndcg@10", "time/fit_s") if c in frame.columns]
    by_epoch = frame.group_by("epoch").agg([pl.col(c).drop_nulls().first() for c in cols])
    rows = by_epoch.sort("epoch").iter_rows(named=True)
    return [
        (int(r["epoch"]) + 1, r["val/ndcg@10"], r.get("time/fit_s"))
        for r in rows
        if r.get("val/ndcg@10") is not None
    ]


def summary(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    out: dict[str, Any] = {"runs_ok": len(ok)}
    for key in (*KEYS, "fit_s_to_best"):
        values = [r[key] for r in ok if r.get(key) is not None]
        if values:
            out[key] = {**spread(values, 4), "mean": round(statistics.fmean(values), 4)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--name", required=True, help="results: defaults_<name>.json")
    parser.add_argument("--variants", nargs="+", required=True, help="NAME=override override ...")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds N, N+1, ...")
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--n-interactions", type=int, default=300_000)
    parser.add_argument("--drift", action="store_true", help="the popularity-drift dataset")
    parser.add_argument("--processed-dir", type=Path, help="any processed directory instead")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    variants = {}
    for text in args.variants:
        name, _, overrides = text.partition("=")
        variants[name] = overrides.split() if overrides else []
    processed = args.processed_dir or synthetic_processed(
        args.n_interactions, **(DRIFT_SPEC if args.drift else {})
    )
    report: dict[str, Any] = {
        "machine": machine(),
        "data": str(processed),
        "command": shlex.join(sys.argv),
        "variants": {name: {"overrides": o, "runs": []} for name, o in variants.items()},
    }
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name, overrides in variants.items():
            entry = report["variants"][name]
            entry["runs"].append(run(name, overrides, processed.resolve(), seed, args))
            entry["summary"] = summary(entry["runs"])
            last = entry["runs"][-1]
            console.print(
                f"{name} seed {seed}: "
                + ", ".join(f"{k} {last[k]:.4f}" for k in KEYS if last.get(k) is not None)
                or last.get("error")
            )
            write_result(f"defaults_{args.name}", report)
    for name, entry in report["variants"].items():
        s = entry["summary"]
        console.print(
            f"{name:>24}: " + "  ".join(f"{k} {s[k]['mean']:.4f}" for k in KEYS if k in s)
        )


if __name__ == "__main__":
    main()
