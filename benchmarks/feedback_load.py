"""Feedback under load, across a SIGTERM: the real `bentoml serve`, 16 concurrent clients
posting `/feedback`, and the server stopped and started again in the middle.

For each batch size (1 event per request: a click; 10: a page of impressions) the clients send
back to back for `--warmup` then `--seconds` seconds (the throughput and latency window), then
the server gets SIGTERM (to its main process, as Kubernetes sends it) while they keep sending,
and a new server starts on the same port and RECSYS_FEEDBACK_DIR; `--after` seconds later the
clients stop. A refused connection (the server is down) or one closed without an answer is
retried with the same body and counted apart; any HTTP answer but 200 is an error.

Every event carries a unique id (its `request_id`), so the log is checked exactly: each id a
client saw accepted must be in it once (lost: missing; duplicates: more than once), every line
must be whole JSON with the log's keys. Target on 2 cores: >= 1,000 events/s, 0 errors, 0 lost,
0 duplicates. Results: benchmarks/results/feedback_load.json and a table.
"""

from __future__ import annotations

import os
from pathlib import Path

# Before bentoml is imported anywhere: the benchmarks' own model store (serve_load.py's).
os.environ["BENTOML_HOME"] = str(Path(__file__).resolve().parent / ".work" / "bentoml")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import asyncio
import collections
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from common import WORK, console, machine, synthetic_processed, write_result
from rich.table import Table
from serve_load import free_port, package_model

from recsys.serving.feedback import FIELDS, read_events
from recsys.serving.local import start_server, stop_server, wait_ready

TARGET_EVENTS_PER_S = 1000.0
RETRY_PAUSE_S = 0.05
READY_TIMEOUT_S = 180.0
OUT = WORK / "feedback_load"


@dataclass
class Tally:
    """What the clients saw: accepted event ids, and each 200's (end time, latency)."""

    accepted: list[str] = field(default_factory=list)
    answered: list[tuple[float, float]] = field(default_factory=list)
    errors: int = 0
    refused: int = 0  # retried: the connection was refused (no server)
    dropped: int = 0  # retried: the connection closed before an answer


async def send(session: aiohttp.ClientSession, url: str, body: dict[str, Any], tally: Tally) -> int:
    """POST until the server answers; the HTTP status."""
    while True:
        try:
            async with session.post(url, json=body) as response:
                await response.read()
                return response.status
        except aiohttp.ClientConnectorError:  # before OSError: it is one
            tally.refused += 1
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            tally.dropped += 1
        await asyncio.sleep(RETRY_PAUSE_S)


async def client(
    session: aiohttp.ClientSession, url: str, name: str, per_request: int, stop: asyncio.Event,
    tally: Tally,
) -> None:  # fmt: skip
    kind = "click" if per_request == 1 else "impression"
    sent = 0
    while not stop.is_set():
        ids = [f"{name}-{sent + i:08d}" for i in range(per_request)]
        sent += per_request
        user = f"user-{name}"
        body = {
            "events": [
                {"type": kind, "user_id": user, "item_id": f"item-{i[-3:]}", "request_id": i}
                for i in ids
            ]
        }
        start = time.perf_counter()
        status = await send(session, url, body, tally)
        if status == 200:
            tally.accepted.extend(ids)
            tally.answered.append((time.perf_counter(), time.perf_counter() - start))
        else:
            tally.errors += 1


def percentile(ordered: list[float], q: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def audit(directory: Path, accepted: list[str]) -> dict[str, Any]:
    """The log against what the clients were told: lost, duplicated, unacknowledged, torn."""
    logged = collections.Counter()
    malformed = 0
    for event in read_events(directory):
        malformed += list(event) != list(FIELDS)
        logged[event["request_id"]] += 1
    files = sorted(directory.glob("*.jsonl"))
    acked = set(accepted)
    return {
        "accepted": len(accepted),
        "logged": sum(logged.values()),
        "lost": len(acked - set(logged)),
        "duplicates": sum(n - 1 for n in logged.values() if n > 1),
        "unacknowledged": len(set(logged) - acked),  # written, but the answer never came
        "torn_lines": sum(not p.read_bytes().endswith(b"\n") for p in files if p.stat().st_size),
        "malformed_lines": malformed,
        "files": len(files),
    }


async def run_phase(per_request: int, args: argparse.Namespace, env: dict[str, str]) -> dict:
    directory = OUT / f"events_{per_request}"
    shutil.rmtree(directory, ignore_errors=True)
    env = {**env, "RECSYS_FEEDBACK_DIR": str(directory)}
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def serve(log: Path) -> subprocess.Popen[bytes]:
        proc = start_server(port, env, log)
        wait_ready(proc, base, log, READY_TIMEOUT_S)
        return proc

    first = await asyncio.to_thread(serve, OUT / f"serve_{per_request}_first.log")
    tally, stop = Tally(), asyncio.Event()
    connector = aiohttp.TCPConnector(limit=args.clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = [
            asyncio.create_task(
                client(session, f"{base}/feedback", f"c{c:02d}", per_request, stop, tally)
            )
            for c in range(args.clients)
        ]
        await asyncio.sleep(args.warmup)
        window_start, accepted_before = time.perf_counter(), len(tally.accepted)
        await asyncio.sleep(args.seconds)
        window_end, accepted_in_window = time.perf_counter(), len(tally.accepted) - accepted_before
        first.send_signal(signal.SIGTERM)  # the main process only, as Kubernetes does
        await asyncio.to_thread(first.wait, 60)
        stopped = time.perf_counter()
        second = await asyncio.to_thread(serve, OUT / f"serve_{per_request}_second.log")
        restarted = time.perf_counter()
        await asyncio.sleep(args.after)
        stop.set()
        await asyncio.gather(*clients)
    await asyncio.to_thread(stop_server, second)
    elapsed = window_end - window_start
    latencies = sorted(lat for end, lat in tally.answered if window_start <= end <= window_end)
    return {
        "events_per_request": per_request,
        "events_per_s": round(accepted_in_window / elapsed, 1),
        "req_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": round(latencies[-1] * 1000, 2),
        "errors": tally.errors,
        "refused_retries": tally.refused,
        "dropped_retries": tally.dropped,
        "sigterm_to_exit_s": round(stopped - window_end, 2),
        "restart_s": round(restarted - stopped, 2),
        "first_exit_code": first.returncode,
        **audit(directory, tally.accepted),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0, help="the measured window")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--after", type=float, default=5.0, help="load after the restart")
    parser.add_argument("--events-per-request", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s, not saved")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.after = 3.0, 1.0, 2.0
    OUT.mkdir(parents=True, exist_ok=True)
    host = machine()  # the load average before the run
    tag = package_model(synthetic_processed())
    env = {"RECSYS_MODEL": tag, "OMP_WAIT_POLICY": "PASSIVE"}
    results = {}
    for per_request in args.events_per_request:
        row = asyncio.run(run_phase(per_request, args, env))
        row["target_met"] = (
            row["events_per_s"] >= TARGET_EVENTS_PER_S
            and row["errors"] == row["lost"] == row["duplicates"] == row["malformed_lines"] == 0
        )
        results[str(per_request)] = row
        console.print(f"{per_request} event(s) per request: {row}")
    report = {
        "benchmark": "feedback_load",
        "server": "bentoml serve, 1 worker per service (the defaults), SIGTERM to the main "
        "process mid-load and a restart on the same RECSYS_FEEDBACK_DIR",
        "clients": args.clients,
        "seconds": args.seconds,
        "target": {"events_per_s": TARGET_EVENTS_PER_S, "errors": 0, "lost": 0, "duplicates": 0},
        "results": results,
        "target_met": all(row["target_met"] for row in results.values()),
        "machine": {**host, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
    }
    path = write_result("feedback_load", report, quick=args.quick)
    table = Table(title=f"POST /feedback, {args.clients} clients, {args.seconds:.0f} s, SIGTERM")
    columns = ["events/req", "events/s", "req/s", "p50 ms", "p99 ms", "errors", "logged",
               "lost", "dup", "target"]  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for row in results.values():
        table.add_row(
            str(row["events_per_request"]), f"{row['events_per_s']:.0f}",
            f"{row['req_per_s']:.0f}", f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}",
            str(row["errors"]), f"{row['logged']:,}", str(row["lost"]), str(row["duplicates"]),
            "met" if row["target_met"] else "missed",
        )  # fmt: skip
    console.print(table)
    console.print(f"target per row: >= {TARGET_EVENTS_PER_S:.0f} events/s, 0 errors, 0 lost, 0 "
                  f"duplicates; results in {path}")  # fmt: skip


if __name__ == "__main__":
    main()
