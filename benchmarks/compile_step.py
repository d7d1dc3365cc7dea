"""Does `torch.compile` pay for the default NeuMF's BPR step on this machine?

The step the LightningModule runs (`training.loss.bpr_loss`, fused Adam) on the demo data's
table sizes, eager against `torch.compile`d loss (forward and backward), with and without the
MLP tower's dropout, at two batch sizes. Reports steady-state triplets/s and the first steps'
time (compilation included), which a training run must win back.
Results: benchmarks/results/compile_step.json and a table.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from common import build_neumf, console, machine, neumf_config, write_result
from rich.console import Console
from rich.table import Table

from recsys.training.loss import bpr_loss

N_USERS, N_ITEMS = 17_829, 4_942  # the demo data's
WARMUP_STEPS = 3
NUM_NEGATIVES = 4  # conf/data/default.yaml's


def measure(batch: int, compiled: bool, dropout: float, steps: int) -> dict[str, float]:
    cfg = neumf_config()
    net = build_neumf(N_USERS, N_ITEMS)
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = dropout
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    l2_reg = float(cfg.l2_reg)

    def loss_of(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        loss, reg = bpr_loss(net, users, items)
        return loss + l2_reg * reg

    loss_fn = torch.compile(loss_of, dynamic=False) if compiled else loss_of
    g = torch.Generator().manual_seed(0)
    rows = batch // NUM_NEGATIVES
    batches = [
        (
            torch.randint(N_USERS, (rows,), generator=g),
            torch.randint(N_ITEMS, (rows, 1 + NUM_NEGATIVES), generator=g),
        )
        for _ in range(steps + WARMUP_STEPS)
    ]

    def step(users: torch.Tensor, items: torch.Tensor) -> None:
        loss = loss_fn(users, items)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for users, items in batches[:WARMUP_STEPS]:
        step(users, items)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for users, items in batches[WARMUP_STEPS:]:
        step(users, items)
    return {"triplets_per_s": round(rows * NUM_NEGATIVES * steps / (time.perf_counter() - start)),
            "first_steps_s": round(warmup, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4096, 16384])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {}
    for batch in args.batch_sizes:
        for dropout in (0.2, 0.0):
            for compiled in (False, True):
                key = f"batch{batch}_dropout{dropout}_{'compiled' if compiled else 'eager'}"
                results[key] = measure(batch, compiled, dropout, args.steps)
                console.print(f"{key}: {results[key]}")
    path = write_result("compile_step", {"machine": machine(), "results": results})
    table = Table(title="Default NeuMF BPR step: eager against torch.compile")
    for col in ("batch", "dropout", "eager triplets/s", "compiled triplets/s", "gain", "compile s"):
        table.add_column(col, justify="right")
    for batch in args.batch_sizes:
        for dropout in (0.2, 0.0):
            eager = results[f"batch{batch}_dropout{dropout}_eager"]
            comp = results[f"batch{batch}_dropout{dropout}_compiled"]
            table.add_row(
                str(batch),
                str(dropout),
                f"{eager['triplets_per_s']:,}",
                f"{comp['triplets_per_s']:,}",
                f"{comp['triplets_per_s'] / eager['triplets_per_s'] - 1:+.0%}",
                str(comp["first_steps_s"]),
            )
    console.print(f"wrote {path}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
