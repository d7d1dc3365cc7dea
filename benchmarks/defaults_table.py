"""The model-defaults study's tables, computed from its results files.

    python benchmarks/defaults_table.py               # the tables of docs/MODEL_DEFAULTS.md
    python benchmarks/defaults_table.py --commands    # the commands that wrote every file
    python benchmarks/defaults_table.py --run         # run them again (hours), then print
    python benchmarks/defaults_table.py --check docs/MODEL_DEFAULTS.md    # the doc agrees

Every figure comes from benchmarks/results/defaults_<name>.json, written by
benchmarks/defaults_study.py (one recsys-train run per variant and seed, on the synthetic demo
data or, with --drift, on the popularity-drift data). Each file records its variants (name
and overrides) and seed count, from which --commands rebuilds the study's command line.
Test NDCG@10 and val NDCG@10 have 4 decimals, Recall@20 3, seconds are `time/fit_s` at the
best epoch (from the start of fitting, validation included).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# (label, results file, variant); a bold label marks today's default.
SIGNAL_ROWS = [
    ("BPR, 4 negatives (the previous default)", "loss_recency", "bpr"),
    ("softmax, 4", "loss_recency", "softmax"),
    ("softmax, 8", "negatives", "softmax_k8"),
    ("softmax, 8, lr 5e-4", "negatives2", "softmax_k8_lr5e-4"),
    ("**softmax, 16**", "negatives2", "softmax_k16"),
    ("softmax, 16, lr 5e-4", "negatives3", "softmax_k16_lr5e-4"),
    ("softmax, 32", "negatives3", "softmax_k32"),
    ("softmax, 4, recency half-life 365 days", "loss_recency", "softmax_hl365"),
    ("MF: softmax, 8", "negatives", "mf_softmax_k8"),
    ("MF: **softmax, 16**", "negatives3", "mf_softmax_k16"),
]
POPNEG_ROWS = [
    ("0 (uniform, default)", "default"),
    ("0.5", "pop05"),
    ("1 (the distribution of positives, as in-batch negatives)", "pop1"),
]
LR_ROWS = [
    ("**sqrt, capped at a batch of 8,192: 2.8e-3 (default)**", "default"),
    ("sqrt, capped at 2,048: 1.4e-3", "lr_cap2048"),
    ("none: 1e-3", "lr_none"),
]
DRIFT_ROWS = [
    ("**defaults**", "default"),
    ("`model.lr_scaling=none` (lr 1e-3)", "lr_none"),
    ("`model.l2_reg=0.001`", "l2_1e-3"),
    ("`data.num_negatives=32`", "neg32"),
    ("`model.net.layers=[8]`", "mlp8"),
    ("`data.recency_half_life_days=365`", "recency365"),
]


def load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / f"defaults_{name}.json").read_text())


def ok_runs(report: dict[str, Any], variant: str) -> list[dict[str, Any]]:
    return [r for r in report["variants"][variant]["runs"] if "error" not in r]


def only_run(report: dict[str, Any], variant: str) -> dict[str, Any]:
    runs = ok_runs(report, variant)
    if len(runs) != 1:
        raise SystemExit(f"{variant}: expected one run, found {len(runs)}")
    return runs[0]


def ndcg(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def recall(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def best(run: dict[str, Any]) -> str:
    return f"{run['best_epoch']} ({run['fit_s_to_best']:.0f} s)"


def bold_if(label: str, text: str) -> str:
    return f"**{text}**" if "**" in label and text else text


def table(header: list[str], align: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def signal_table() -> str:
    rows = []
    for label, name, variant in SIGNAL_ROWS:
        run = only_run(load(name), variant)
        cells = [ndcg(run["val/ndcg@10"]), ndcg(run["test/ndcg@10"]), recall(run["test/recall@20"])]
        rows.append([label, *(bold_if(label, c) for c in cells), best(run)])
    return table(
        ["NeuMF unless noted, seed 0", "val NDCG@10", "test NDCG@10", "test Recall@20",
         "best epoch (fit s)"],
        ["---", "---:", "---:", "---:", "---:"],
        rows,
    )  # fmt: skip


def popneg_table() -> str:
    demo, drift = load("popneg_demo"), load("popneg_drift")
    rows = []
    for label, variant in POPNEG_ROWS:
        cells = []
        for report in (demo, drift):
            run = only_run(report, variant)
            cells.append(f"{ndcg(run['val/ndcg@10'])} / {ndcg(run['test/ndcg@10'])}")
        rows.append([label, *cells])
    return table(
        ["exponent", "demo val / test", "popularity-drift val / test"], ["---", "---", "---"], rows
    )


def seeds_mean(runs: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in runs]
    each = ", ".join(f"{v:.4f}" for v in values)
    return f"{statistics.fmean(values):.4f} ({each})"


def lr_table() -> str:
    demo, drift = load("lr_demo"), load("lr_drift")
    rows = []
    for label, variant in LR_ROWS:
        cells = []
        for report in (demo, drift):
            runs = ok_runs(report, variant)
            seconds = statistics.fmean(r["fit_s_to_best"] for r in runs)
            cells += [seeds_mean(runs, "test/ndcg@10"), f"{seconds:.0f} s"]
        rows.append([label, *cells])
    return table(
        ["lr scaling (lr at the demo's auto batch)", "demo: test NDCG@10, mean (per seed)",
         "demo: to best", "drift: test NDCG@10, mean (per seed)", "drift: to best"],
        ["---", "---:", "---:", "---:", "---:"],
        rows,
    )  # fmt: skip


def drift_table() -> str:
    report = load("drift_neumf")
    rows = []
    for label, variant in DRIFT_ROWS:
        run = only_run(report, variant)
        cells = [ndcg(run["val/ndcg@10"]), ndcg(run["test/ndcg@10"]), recall(run["test/recall@20"])]
        rows.append([label, *cells, best(run)])
    return table(
        ["NeuMF, popularity-drift data, seed 0", "val NDCG@10", "test NDCG@10", "test Recall@20",
         "best epoch (fit s)"],
        ["---", "---:", "---:", "---:", "---:"],
        rows,
    )  # fmt: skip


TABLES = {"signal": signal_table, "popneg": popneg_table, "lr": lr_table, "drift": drift_table}


def study_command(path: Path) -> str:
    """The defaults_study.py command line that writes this file, rebuilt from what it holds
    (its own "command" field lost the quoting of multi-override variants)."""
    report = json.loads(path.read_text())
    recorded = report.get("command", "")
    seeds = re.search(r"--seeds (\d+)", recorded)
    args = ["python", "benchmarks/defaults_study.py", "--name", path.stem.removeprefix("defaults_")]
    if "--drift" in recorded.split():
        args.append("--drift")
    args += ["--seeds", seeds.group(1) if seeds else "3"]
    if first := re.search(r"--first-seed (\d+)", recorded):
        args += ["--first-seed", first.group(1)]
    args.append("--variants")
    args += [f"{name}={' '.join(v['overrides'])}" for name, v in report["variants"].items()]
    return shlex.join(args)


def study_files() -> list[Path]:
    return sorted(RESULTS.glob("defaults_*.json"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--table", choices=sorted(TABLES), action="append", help="only these")
    parser.add_argument("--commands", action="store_true", help="print the study commands")
    parser.add_argument("--run", action="store_true", help="run every study again, then print")
    parser.add_argument("--check", type=Path, metavar="DOC", help="fail unless DOC shows them")
    args = parser.parse_args()
    if args.commands or args.run:
        for path in study_files():
            command = study_command(path)
            print(command, flush=True)
            if args.run:
                argv = shlex.split(command)
                subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, check=True)
        if not args.run:
            return
    tables = {name: TABLES[name]() for name in (args.table or TABLES)}
    if args.check:
        text = args.check.read_text()
        missing = [name for name, body in tables.items() if body not in text]
        if missing:
            raise SystemExit(f"{args.check}: tables differ from the results: {', '.join(missing)}")
        print(f"{args.check}: {len(tables)} tables match benchmarks/results/defaults_*.json")
        return
    print("\n\n".join(tables.values()))


if __name__ == "__main__":
    main()
