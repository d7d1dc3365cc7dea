"""Serving under load: the real `bentoml serve` from the project root, 16 concurrent clients.

The served model is the default NeuMF at the size of the `make demo` data (random weights:
speed does not depend on training), packaged by the same code as `recsys-package` into a
private model store under benchmarks/.work, so the user's store is left alone. Each client
sends `/recommend` for known users (top-10, seen items excluded) back to back for a fixed time;
latency is measured per request on the client. Target on 2 cores: >= 300 req/s, p99 <= 100 ms,
no errors. Results: benchmarks/results/serve_load.json and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import polars as pl
from common import WORK, build_neumf, console, machine, synthetic_processed, write_result
from rich.table import Table

from recsys.data.evalsets import known_interactions
from recsys.data.processed import load_processed
from recsys.packaging.bundle import BundleParts
from recsys.packaging.sources import ids_in_order
from recsys.serving.local import bentoml_serve

TARGET_RPS = 300.0
TARGET_P99_MS = 100.0
STORE = WORK / "bentoml"


def package_model(processed: Path) -> str:
    """The default NeuMF for this data, saved in the benchmark's own model store."""
    os.environ["BENTOML_HOME"] = str(STORE)
    from recsys.packaging.store import save_parts

    data = load_processed(processed)
    known = known_interactions(data)
    parts = BundleParts(
        net=build_neumf(data.n_users, data.n_items).eval(),
        user_ids=ids_in_order(processed / "users.parquet", "user"),
        item_ids=ids_in_order(processed / "items.parquet", "item"),
        seen_indptr=known["indptr"],
        seen_indices=known["indices"],
        popularity=known["popularity"],
        info={"source_kind": "benchmark", "source": "benchmarks/serve_load.py (random weights)"},
    )
    return save_parts(parts)


def rows(path: Path) -> int:
    return pl.scan_parquet(path).select(pl.len()).collect().item()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def post_ok(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> bool:
    """One request, its answer read whole: True for a 200."""
    try:
        async with session.post(url, json=body) as resp:
            await resp.read()
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def run_load(
    url: str, bodies: list[dict[str, Any]], clients: int, seconds: float
) -> tuple[list[float], int, float]:
    """Closed loop: each client sends its next request when the last one answered."""
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession, seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        while time.perf_counter() < stop:
            t = time.perf_counter()
            ok = await post_ok(session, url, rng.choice(bodies))
            latencies.append(time.perf_counter() - t)
            errors += not ok

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(client(session, seed) for seed in range(clients)))
        elapsed = time.perf_counter() - start
    return latencies, errors, elapsed


def summarize(latencies: list[float], errors: int, elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    rps = len(ordered) / elapsed
    return {
        "requests": len(ordered),
        "errors": errors,
        "req_per_s": round(rps, 1),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batch-users", type=int, default=32, help="users per /recommend_batch")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s, not saved")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup = 3.0, 1.0

    processed = synthetic_processed()
    tag = package_model(processed)
    # Users with training rows: the personalised path, not the popular fallback.
    user_ids = (
        pl.read_parquet(processed / "train.parquet", columns=["user_idx"])
        .unique()
        .join(pl.read_parquet(processed / "users.parquet"), on="user_idx")
        .sort("user_idx")["user_id"]
        .to_list()
    )
    rng = random.Random(0)
    sample = rng.sample(user_ids, min(5000, len(user_ids)))
    endpoints = {
        "recommend": [{"user_id": u, "k": args.k} for u in sample],
        f"recommend_batch ({args.batch_users} users)": [
            {"user_ids": rng.sample(sample, args.batch_users), "k": args.k} for _ in range(200)
        ],
    }
    env = {"BENTOML_HOME": str(STORE), "RECSYS_MODEL": tag, "BENTOML_DO_NOT_TRACK": "true"}
    results: dict[str, Any] = {}
    with bentoml_serve(free_port(), env, WORK / "serve_load.log") as base:
        for name, bodies in endpoints.items():
            url = f"{base}/{name.split()[0]}"
            asyncio.run(run_load(url, bodies, args.clients, args.warmup))
            row = summarize(*asyncio.run(run_load(url, bodies, args.clients, args.seconds)))
            results[name] = row
            console.print(f"{name}: {row}")
    main_row = results["recommend"]
    report = {
        "benchmark": "serve_load",
        "model": "NeuMF (default config, random weights)",
        "catalogue": {
            "n_users": rows(processed / "users.parquet"),
            "n_items": rows(processed / "items.parquet"),
        },
        "server": "bentoml serve, 1 worker per service, RECSYS_TORCH_THREADS=1 (the defaults)",
        "clients": args.clients,
        "seconds": args.seconds,
        "k": args.k,
        "target": {"req_per_s": TARGET_RPS, "p99_ms": TARGET_P99_MS, "errors": 0},
        "results": results,
        "target_met": main_row["req_per_s"] >= TARGET_RPS
        and main_row["p99_ms"] <= TARGET_P99_MS
        and all(row["errors"] == 0 for row in results.values()),
        "machine": machine(),
    }  # fmt: skip
    path = write_result("serve_load", report, quick=args.quick)
    table = Table(title=f"bentoml serve, {args.clients} clients, {args.seconds:.0f} s per endpoint")
    for column in ("endpoint", "req/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for name, row in results.items():
        table.add_row(name, f"{row['req_per_s']:.0f}", f"{row['p50_ms']:.1f}",
                      f"{row['p99_ms']:.1f}", str(row["errors"]))  # fmt: skip
    console.print(table)
    console.print(f"target (recommend: >= {TARGET_RPS:.0f} req/s, p99 <= {TARGET_P99_MS:.0f} ms, "
                  f"0 errors) met: {report['target_met']}; results in {path}")  # fmt: skip


if __name__ == "__main__":
    main()
