"""Benchmark recsys-preprocess against pandas and a bare polars read (make bench).

Each contender runs as its own process (interpreter start-up included for all three) under
a fresh wrapper, so peak RSS is that process alone. Times are the median of `--repeat` runs.
Results: benchmarks/results/preprocess.json (and a Markdown table on stdout for
docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORK = ROOT / "benchmarks" / ".work"
RESULTS = ROOT / "benchmarks" / "results" / "preprocess.json"

BARE_READ = (
    "import polars as pl, sys; pl.scan_ndjson(sys.argv[1], schema={'user_id': pl.String, "
    "'parent_asin': pl.String, 'timestamp': pl.Int64, 'rating': pl.Float64}).collect()"
)
# Measures one child: wall time and ru_maxrss of the (only) waited-for child tree.
WRAPPER = (
    "import resource, subprocess, sys, time, json; t = time.perf_counter(); "
    "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"
    ".returncode; dt = time.perf_counter() - t; "
    "print(json.dumps({'rc': rc, 'seconds': dt, "
    "'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))"
)


def measure(cmd: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, *map(str, cmd)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(map(str, cmd))}")
    return result


def generate(n: int, users: int, items: int) -> Path:
    path = WORK / f"reviews_{n}.jsonl"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        subprocess.run(
            [
                BIN / "recsys-generate",
                f"out={path}",
                f"n_interactions={n}",
                f"n_users={users}",
                f"n_items={items}",
                f"hydra.run.dir={WORK}/logs",
            ],
            check=True,
        )
        print(f"generated {n:,} reviews in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return path


def contenders(src: Path) -> dict[str, list]:
    return {
        "recsys-preprocess": [
            BIN / "recsys-preprocess",
            f"data.input={src}",
            f"data.processed_dir={WORK}/out_recsys",
            f"hydra.run.dir={WORK}/logs",
        ],
        "pandas": [
            sys.executable,
            ROOT / "benchmarks" / "pandas_reference.py",
            src,
            WORK / "out_pandas",
        ],
        "polars bare read": [sys.executable, "-c", BARE_READ, src],
    }


def run(repeat: int, n: int, users: int, items: int) -> dict:
    src = generate(n, users, items)
    rows = {}
    for name, cmd in contenders(src).items():
        runs = [measure(cmd) for _ in range(repeat)]
        rows[name] = {
            "seconds": round(statistics.median(r["seconds"] for r in runs), 3),
            "seconds_all": [round(r["seconds"], 3) for r in runs],
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
        }
        print(f"{name}: {rows[name]}", file=sys.stderr)
    ours, pandas, bare = rows["recsys-preprocess"], rows["pandas"], rows["polars bare read"]
    ours_meta = json.loads((WORK / "out_recsys" / "metadata.json").read_text())
    pandas_meta = json.loads((WORK / "out_pandas" / "metadata.json").read_text())
    same = all(ours_meta[k] == pandas_meta[k] for k in pandas_meta)
    return {
        "input": {"reviews": n, "bytes": src.stat().st_size},
        "results": rows,
        "same_output_as_pandas": same,
        "speedup_vs_pandas": round(pandas["seconds"] / ours["seconds"], 2),
        "ratio_to_bare_read": round(ours["seconds"] / bare["seconds"], 2),
        "rss_vs_pandas": round(ours["peak_rss_mb"] / pandas["peak_rss_mb"], 2),
        "targets": {
            "speedup_vs_pandas": ">= 4",
            "ratio_to_bare_read": "<= 2.5",
            "rss_vs_pandas": "<= 1",
        },
    }


def run_large(n: int, users: int, items: int) -> dict:
    src = generate(n, users, items)
    result = measure(contenders(src)["recsys-preprocess"])
    print(f"recsys-preprocess on {n:,}: {result}", file=sys.stderr)
    return {
        "reviews": n,
        "bytes": src.stat().st_size,
        "seconds": round(result["seconds"], 1),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "target_peak_rss_mb": "< 4096",
    }


def table(report: dict) -> str:
    rows = report["results"]
    lines = ["| contender (1M reviews) | time (s) | peak RSS (MB) |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['seconds']:.2f} | {v['peak_rss_mb']:.0f} |" for k, v in rows.items()]
    lines.append(
        f"\nrecsys vs pandas: {report['speedup_vs_pandas']}x faster, RSS ratio "
        f"{report['rss_vs_pandas']}; recsys / bare read: {report['ratio_to_bare_read']}x"
    )
    if "large" in report:
        large = report["large"]
        lines.append(
            f"{large['reviews']:,} reviews ({large['bytes'] / 2**30:.1f} GiB): "
            f"{large['seconds']} s, peak RSS {large['peak_rss_mb']:.0f} MB"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reviews", type=int, default=1_000_000)
    parser.add_argument(
        "--large", type=int, default=10_000_000, help="size of the memory run (0 to skip)"
    )
    args = parser.parse_args()
    scale = args.reviews / 1_000_000
    report = run(args.repeat, args.reviews, int(80_000 * scale), int(20_000 * scale))
    if args.large:
        report["large"] = run_large(args.large, args.large // 12, args.large // 50)
    report["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    report["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(WORK / "out_pandas", ignore_errors=True)
    print(table(report))


if __name__ == "__main__":
    main()
