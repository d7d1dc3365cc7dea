"""Full-ranking evaluation speed: the real path (`evaluate_full` -> `rank_batch` ->
`masked_topk` -> NeuMF's split-first-layer `score_items`) on 15,000 users x 10,000 items.

Random weights (speed does not depend on training) in the default NeuMF architecture, seen
and relevant items per user like a real test set. For context, a naive scorer that builds
per-pair MLP inputs (`net.score` on every user x item pair) runs the same protocol on a slice
of the users and is extrapolated. Results: benchmarks/results/eval_speed.json and a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from common import (
    add_run_options,
    build_neumf,
    console,
    earlier_report,
    finish,
    machine,
    sorted_rows,
    spread,
    write_result,
)
from rich.console import Console
from rich.table import Table

from recsys.data.evalsets import EvalSet
from recsys.data.sampling import NegativeSampler
from recsys.evaluation.protocols import evaluate_full
from recsys.models.base import RecommenderNet

TARGET_SECONDS = 5.0
KS = (10, 20)
BATCH_SIZES = (256, 1024, 4096)
# Per-pair activations of the naive scorer grow with pairs per call: this bounds them (~0.5 GiB).
NAIVE_PAIRS = 1 << 18


def power_law_counts(n: int, mean: float, cap: int, g: torch.Generator) -> torch.Tensor:
    """Items per user: at least one, heavy-tailed like real activity, about `mean` on average."""
    pareto = (1 - torch.rand(n, generator=g)).pow(-0.5)  # Pareto(alpha=2): mean 2, long tail
    return (pareto * mean / 2).round().long().clamp(1, cap)


def synthetic_evalset(n_users: int, n_items: int, seen: float, relevant: float) -> EvalSet:
    """Seen items (masked) drawn by item popularity, relevant items among the unseen."""
    g = torch.Generator().manual_seed(0)
    popularity = torch.arange(1, n_items + 1, dtype=torch.float).pow(-0.7)
    users = torch.arange(n_users)
    seen_users = users.repeat_interleave(power_law_counts(n_users, seen, n_items // 2, g))
    seen_items = torch.multinomial(popularity, seen_users.numel(), replacement=True, generator=g)
    keys = torch.unique(seen_users * n_items + seen_items)  # one row per (user, item)
    seen_users, seen_items = keys // n_items, keys % n_items
    rel_users = users.repeat_interleave(power_law_counts(n_users, relevant, n_items // 4, g))
    rel_items = NegativeSampler(seen_users, seen_items, n_items).sample(rel_users, g)
    return EvalSet.build([(seen_users, seen_items)], (rel_users, rel_items), n_users)


class PairwiseScorer(RecommenderNet):
    """The naive full ranking: every (user, item) pair through `net.score`, MLP included."""

    def __init__(self, net: RecommenderNet) -> None:
        super().__init__(net.n_users, net.n_items)
        self.net = net

    def score_items(self, users, start=0, stop=None):
        stop = self.n_items if stop is None else stop
        items = torch.arange(start, stop)
        per_call = max(1, NAIVE_PAIRS // items.numel())
        rows = [
            self.net.score(u.repeat_interleave(items.numel()), items.repeat(u.numel()))
            for u in users.split(per_call)
        ]
        return torch.cat(rows).view(users.numel(), items.numel())


def random_neumf(n_users: int, n_items: int) -> RecommenderNet:
    """The default NeuMF with a random head: the init's all-zero MLP half would leave the
    tower out of the scores, and so out of the cross-check against the naive scorer."""
    net = build_neumf(n_users, n_items).eval()
    with torch.no_grad():
        net.head.weight.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(0))
    return net


def timed_eval(net: RecommenderNet, evalset: EvalSet, batch_size: int) -> tuple[float, Any]:
    """As `recsys-eval` runs it (report.py): eval mode, inference_mode, evaluate_full."""
    start = time.perf_counter()
    with torch.inference_mode():
        values, ranked = evaluate_full(net, evalset, KS, batch_size)
    return time.perf_counter() - start, (values, ranked)


def breakdown(net: RecommenderNet, evalset: EvalSet, batch_size: int) -> dict[str, float]:
    """Seconds inside NeuMF's MLP grid, all of score_items, and the rest (mask, top-k, hits)."""
    spent: dict[str, float] = defaultdict(float)

    def timer(name: str, fn: Callable) -> Callable:
        def wrapped(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            spent[name] += time.perf_counter() - t
            return out

        return wrapped

    net.mlp.grid = timer("mlp_grid", net.mlp.grid)
    net.score_items = timer("score_items", net.score_items)
    try:
        total, _ = timed_eval(net, evalset, batch_size)
    finally:
        del net.mlp.grid, net.score_items  # back to the class's methods
    return {
        "total_s": round(total, 3),
        "mlp_tower_s": round(spent["mlp_grid"], 3),
        "gmf_and_bias_s": round(spent["score_items"] - spent["mlp_grid"], 3),
        "mask_topk_hits_batches_s": round(total - spent["score_items"], 3),
    }


def naive(net: RecommenderNet, evalset: EvalSet, n_users: int, fast_ranked: list) -> dict:
    """Per-pair scoring on the first `n_users` users, extrapolated to all of them."""
    part = dataclasses.replace(evalset, users=evalset.users[:n_users])
    seconds, (_, ranked) = timed_eval(PairwiseScorer(net), part, 1024)
    slow_items = torch.cat([b.items for b in ranked])
    fast_items = torch.cat([b.items for b in fast_ranked])[:n_users]
    scale = evalset.users.numel() / n_users
    same = (slow_items == fast_items).all(1).float().mean()
    return {
        "users": n_users,
        "threads": torch.get_num_threads(),
        "seconds": round(seconds, 2),
        "extrapolated_seconds": round(seconds * scale, 1),
        "same_top20_as_fast_path": round(float(same), 4),
    }


def table(report: dict[str, Any]) -> Table:
    size = report["size"]
    out = Table(
        title=f"NeuMF full ranking, {size['users']:,} users x {size['items']:,} items, "
        f"K={list(KS)}: seconds, median (min-max) of n repeats"
    )
    cols = ("threads", "eval batch", "n", "wall s", "min-max", "CPU s", "MLP tower s", "ok")
    for col in cols:
        out.add_column(col, justify="right")
    for threads, batch, row in sorted_rows(report):
        s = row["seconds"]
        out.add_row(
            threads,
            batch,
            str(row["repeat"]),
            f"{s['median']:.2f}",
            f"{s['min']:.2f}-{s['max']:.2f}",
            f"{row['cpu_seconds']['median']:.2f}",
            f"{row['breakdown']['mlp_tower_s']:.2f}",
            "yes" if row["target_met"] else "NO",
        )
    if "naive" in report:
        nv = report["naive"]
        out.add_row(
            str(nv["threads"]),
            "naive",
            "1",
            f"~{nv['extrapolated_seconds']:.0f}",
            f"({nv['seconds']:.1f} s / {nv['users']:,} users)",
        )
    return out


def measure(net: RecommenderNet, evalset: EvalSet, batch_size: int, repeat: int) -> dict:
    wall, cpu, fast_ranked = [], [], []
    for r in range(repeat):
        cpu_start = time.process_time()
        seconds, (_, fast_ranked) = timed_eval(net, evalset, batch_size)
        wall.append(seconds)
        cpu.append(time.process_time() - cpu_start)
        console.print(
            f"threads {torch.get_num_threads()} eval batch {batch_size} repeat {r + 1}/{repeat}: "
            f"{seconds:.2f}s wall, {cpu[-1]:.2f}s CPU, load {os.getloadavg()[0]:.1f}"
        )
    return {
        "repeat": repeat,
        "seconds": spread(wall),
        "cpu_seconds": spread(cpu),
        "users_per_s": round(evalset.users.numel() / statistics.median(wall)),
        "target_met": statistics.median(wall) < TARGET_SECONDS,
        "breakdown": breakdown(net, evalset, batch_size),
        "ranked": fast_ranked,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_run_options(parser, BATCH_SIZES)
    parser.add_argument("--users", type=int, default=15_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--seen", type=float, default=20.0, help="mean seen items per user")
    parser.add_argument("--relevant", type=float, default=3.0, help="mean relevant per user")
    parser.add_argument(
        "--naive-users", type=int, default=1_500, help="users for the naive baseline (0: skip)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1,500 users, 1 repeat, batch 1024"
    )
    args = parser.parse_args()
    if args.quick:
        args.users, args.repeat, args.batch_sizes = 1_500, 1, [1024]
        args.naive_users = min(args.naive_users, 100)
    net = random_neumf(args.users, args.items)
    evalset = synthetic_evalset(args.users, args.items, args.seen, args.relevant)
    seen = evalset.seen_indptr.diff().float()
    relevant = evalset.rel_indptr.diff().float()
    report: dict[str, Any] = {
        "machine": machine(),
        "repeat": args.repeat,
        "size": {
            "users": evalset.users.numel(),
            "items": args.items,
            "seen_per_user": {"mean": round(float(seen.mean()), 1), "max": int(seen.max())},
            "relevant_per_user": {"mean": round(float(relevant.mean()), 2)},
        },
        "model": net.spec() | {"n_users": args.users, "n_items": args.items},
        "ks": list(KS),
        "target": f"median wall < {TARGET_SECONDS} s at every eval batch size",
        "results": {},
    }
    if args.merge:
        earlier = earlier_report("eval_speed")
        report["results"] = earlier.get("results", {})
        if "naive" in earlier:
            report["naive"] = earlier["naive"]
    ranked: list = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        timed_eval(net, dataclasses.replace(evalset, users=evalset.users[:256]), 256)  # warm-up
        rows = report["results"].setdefault(str(threads), {})
        for batch_size in args.batch_sizes:
            rows[str(batch_size)] = measure(net, evalset, batch_size, args.repeat)
            ranked = rows[str(batch_size)].pop("ranked")
            path = write_result("eval_speed", finish(report), quick=args.quick)
    if args.naive_users:
        report["naive"] = naive(net, evalset, args.naive_users, ranked)
        console.print(f"naive per-pair scorer: {report['naive']}")
        path = write_result("eval_speed", finish(report), quick=args.quick)
    console.print(f"wrote {path}")
    Console(width=130).print(table(report))


if __name__ == "__main__":
    main()
