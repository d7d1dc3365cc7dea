"""How to update embedding tables: dense Adam (plain and fused) against sparse / row-wise updates.

The choice behind the default optimizer (`fused: true` Adam on dense gradients): a BPR-MF step
(one lookup per table, dot product, softplus) on tables the size of the demo data's, at batch
sizes from 1,024 to 65,536, with each way of updating the rows:

- adam, adam_fused: torch.optim.Adam on dense gradients (every row, every step);
- sparse_adam: nn.Embedding(sparse=True) + torch.optim.SparseAdam;
- sparse_adagrad: nn.Embedding(sparse=True) + torch.optim.Adagrad (sparse support);
- lazy_adam, rowwise_adagrad: hand-written updates of the touched rows only (Adam's moments,
  or one Adagrad accumulator per row as in DLRM), from the same sparse gradients.

Results: benchmarks/results/embedding_updates.json and a table (steps/s as triplets/s).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from common import console, machine, spread, write_result
from rich.console import Console
from rich.table import Table

BATCH_SIZES = (1024, 4096, 16384, 65536)
DIM = 64


class LazyAdam(torch.optim.Optimizer):
    """Adam on the rows a sparse gradient touches; the others keep their moments unchanged."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> None:
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["step"] += 1
                rows, grad = _coalesced(p.grad)
                m = state["m"].index_select(0, rows).mul_(b1).add_(grad, alpha=1 - b1)
                v = state["v"].index_select(0, rows).mul_(b2).addcmul_(grad, grad, value=1 - b2)
                state["m"].index_copy_(0, rows, m)
                state["v"].index_copy_(0, rows, v)
                t = state["step"]
                step = group["lr"] * math.sqrt(1 - b2**t) / (1 - b1**t)
                p.index_add_(0, rows, m.div_(v.sqrt_().add_(group["eps"])), alpha=-step)


class RowwiseAdagrad(torch.optim.Optimizer):
    """One Adagrad accumulator per row (mean squared gradient), touched rows only."""

    def __init__(self, params, lr: float = 1e-2, eps: float = 1e-10):
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable | None = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["sum"] = torch.zeros(p.shape[0])
                rows, grad = _coalesced(p.grad)
                acc = state["sum"].index_select(0, rows).add_(grad.pow(2).mean(1))
                state["sum"].index_copy_(0, rows, acc)
                scaled = grad.div_(acc.sqrt_().add_(group["eps"])[:, None])
                p.index_add_(0, rows, scaled, alpha=-group["lr"])


def _coalesced(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct rows of a sparse row gradient and their summed values."""
    rows, inverse = torch.unique(grad._indices()[0], return_inverse=True)
    values = grad._values()
    return rows, values.new_zeros(rows.numel(), values.shape[1]).index_add_(0, inverse, values)


OPTIMIZERS: dict[str, tuple[bool, Callable[[list], torch.optim.Optimizer]]] = {
    "adam": (False, lambda ps: torch.optim.Adam(ps, lr=1e-3)),
    "adam_fused": (False, lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True)),
    "sparse_adam": (True, lambda ps: torch.optim.SparseAdam(ps, lr=1e-3)),
    "sparse_adagrad": (True, lambda ps: torch.optim.Adagrad(ps, lr=1e-2)),
    "lazy_adam": (True, lambda ps: LazyAdam(ps)),
    "rowwise_adagrad": (True, lambda ps: RowwiseAdagrad(ps)),
}


def rate(name: str, n_users: int, n_items: int, batch: int, steps: int) -> float:
    """Triplets/s of BPR-MF steps with optimizer `name`, after 3 warm-up steps."""
    sparse, make = OPTIMIZERS[name]
    torch.manual_seed(0)
    users = torch.nn.Embedding(n_users, DIM, sparse=sparse)
    items = torch.nn.Embedding(n_items, DIM, sparse=sparse)
    optimizer = make([users.weight, items.weight])
    g = torch.Generator().manual_seed(0)
    data = [
        (torch.randint(n, (batch,), generator=g) for n in (n_users, n_items, n_items))
        for _ in range(steps + 3)
    ]
    data = [tuple(d) for d in data]

    def lookup(table: torch.nn.Embedding, index: torch.Tensor) -> torch.Tensor:
        # Dense: the lookup the nets' training step uses (recsys.models.base.rows).
        return table(index) if sparse else table.weight.index_select(0, index)

    def step(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> None:
        q = lookup(items, torch.cat([p, n])).view(2, batch, DIM)
        loss = F.softplus(-(lookup(users, u) * (q[0] - q[1])).sum(-1)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for triplet in data[:3]:
        step(*triplet)
    start = time.perf_counter()
    for triplet in data[3:]:
        step(*triplet)
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-users", type=int, default=17_829, help="the demo data's")
    parser.add_argument("--n-items", type=int, default=4_942)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, few steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    repeat = 1 if args.quick else args.repeat
    results: dict[str, dict[str, Any]] = {}
    for batch in BATCH_SIZES:
        steps = 3 if args.quick else max(8, (1 << 19) // batch)
        runs: dict[str, list[float]] = {name: [] for name in OPTIMIZERS}
        for r in range(repeat):
            # Rotate who goes first: a load spike then penalises no optimizer alone.
            names = list(OPTIMIZERS)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                runs[name].append(rate(name, args.n_users, args.n_items, batch, steps))
        results[str(batch)] = {name: spread(v, 0) for name, v in runs.items()}
        console.print(f"batch {batch}: " + ", ".join(
            f"{name} {v['median']:,.0f}/s" for name, v in results[str(batch)].items()
        ))  # fmt: skip
    report = {
        "machine": machine(),
        "tables": {"n_users": args.n_users, "n_items": args.n_items, "dim": DIM},
        "repeat": repeat,
        "unit": "BPR-MF triplets per second (median, min, max of the repeats)",
        "results": results,
    }
    path = write_result("embedding_updates", report, quick=args.quick)
    table = Table(title=f"BPR-MF steps on {args.n_users:,} + {args.n_items:,} rows x {DIM}")
    table.add_column("batch", justify="right")
    for name in OPTIMIZERS:
        table.add_column(name, justify="right")
    for batch, row in results.items():
        table.add_row(batch, *(f"{row[name]['median']:,.0f}" for name in OPTIMIZERS))
    console.print(f"wrote {path}")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
