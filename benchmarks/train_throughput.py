"""Training throughput: the real Lightning path (RecommenderModule + RecsysDataModule) against a
bare PyTorch loop doing the same work, to show what Lightning costs per step.

Both contenders train the default NeuMF (conf/model/neumf.yaml) from the same initial weights
on the same BPRTriplets epoch (same seed, so the same triplets), with the same Adam and the
same loss; their weights after the epoch are compared to prove it. Repeats alternate the two
contenders so that drift in the machine's load hits both alike.
Results: benchmarks/results/train_throughput.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from common import (
    add_run_options,
    build_neumf,
    console,
    earlier_report,
    finish,
    machine,
    neumf_config,
    sorted_rows,
    spread,
    synthetic_processed,
    write_result,
)
from hydra.utils import instantiate
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from recsys.data.datamodule import RecsysDataModule
from recsys.data.processed import load_processed
from recsys.data.sampling import BPRTriplets, NegativeSampler
from recsys.training.module import RecommenderModule

TARGET_RATIO = 0.9  # Lightning in-loop triplets/s over the bare loop's, at every batch size
BATCH_SIZES = (256, 1024, 4096)
WARMUP_BATCHES = 20
SIZED_BY_DATA = ("n_users", "n_items")
# Reseeded just before each epoch: equal dropout masks make the two nets' weights comparable.
DROPOUT_SEED = 1


def trainer_kwargs(limit_batches: int | None) -> dict[str, Any]:
    return {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "limit_val_batches": 0,
        "limit_train_batches": limit_batches if limit_batches else 1.0,
    }


def lightning_run(processed: Path, batch_size: int, limit_batches: int | None) -> dict[str, Any]:
    """One `trainer.fit` epoch; in-loop time is the module's own (first batch to last step)."""
    cfg = neumf_config()
    datamodule = RecsysDataModule(str(processed), batch_size=batch_size, seed=0)
    datamodule.load()  # recsys-train loads eagerly too, before building the trainer
    net = build_neumf(datamodule.n_users, datamodule.n_items)
    module = RecommenderModule(
        net, optimizer=instantiate(cfg.optimizer), l2_reg=cfg.l2_reg, ks=list(cfg.ks)
    )
    start = time.perf_counter()
    trainer = L.Trainer(**trainer_kwargs(limit_batches))
    torch.manual_seed(DROPOUT_SEED)
    trainer.fit(module, datamodule=datamodule)
    end_to_end = time.perf_counter() - start
    return {
        "samples": module.train_samples,
        "in_loop_s": module.train_seconds,
        "end_to_end_s": end_to_end,
        "net": net,
    }


def bare_run(processed: Path, batch_size: int, limit_batches: int | None) -> dict[str, Any]:
    """The same epoch as a plain loop: forward, loss, backward, Adam step, nothing else."""
    cfg = neumf_config()
    data = load_processed(processed)
    train = data.train
    sampler = NegativeSampler(train.users, train.items, data.n_items)
    net = build_neumf(data.n_users, data.n_items)
    optimizer = instantiate(cfg.optimizer)(params=net.parameters())
    l2_reg = float(cfg.l2_reg)
    net.train()
    torch.manual_seed(DROPOUT_SEED)
    torch.empty((), dtype=torch.int64).random_()  # as Lightning's DataLoader draws its base seed
    start = time.perf_counter()
    triplets = BPRTriplets(train.users, train.items, sampler, batch_size, seed=0)
    samples = 0
    for users, pos, neg in itertools.islice(triplets, limit_batches):
        diff = net.score(users, pos) - net.score(users, neg)
        reg = net.regularization(users, pos, neg) / users.numel()
        loss = F.softplus(-diff).mean() + l2_reg * reg
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        samples += users.numel()
    seconds = time.perf_counter() - start
    return {"samples": samples, "in_loop_s": seconds, "net": net}


def max_weight_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max(float((x - y).abs().max()) for x, y in pairs)


def measure(
    processed: Path, batch_size: int, repeat: int, limit: int | None, warmup: int
) -> dict[str, Any]:
    lightning_run(processed, batch_size, warmup)
    bare_run(processed, batch_size, warmup)
    rates: dict[str, list[float]] = {"bare": [], "lightning": [], "end_to_end": [], "paired": []}
    weight_diff = 0.0
    for r in range(repeat):
        # Alternate who goes first: a load spike then penalises neither contender alone.
        runs = [bare_run, lightning_run] if r % 2 == 0 else [lightning_run, bare_run]
        done = {run.__name__: run(processed, batch_size, limit) for run in runs}
        b, lt = done["bare_run"], done["lightning_run"]
        if b["samples"] != lt["samples"]:
            raise SystemExit(f"contenders saw {b['samples']} vs {lt['samples']} triplets")
        weight_diff = max(weight_diff, max_weight_diff(b["net"], lt["net"]))
        rates["bare"].append(b["samples"] / b["in_loop_s"])
        rates["lightning"].append(lt["samples"] / lt["in_loop_s"])
        rates["end_to_end"].append(lt["samples"] / lt["end_to_end_s"])
        rates["paired"].append(rates["lightning"][-1] / rates["bare"][-1])
        console.print(
            f"threads {torch.get_num_threads()} batch {batch_size} repeat {r + 1}/{repeat}: "
            f"bare {rates['bare'][-1]:,.0f}/s, "
            f"lightning {rates['lightning'][-1]:,.0f}/s in-loop, "
            f"{rates['end_to_end'][-1]:,.0f}/s end-to-end ({lt['end_to_end_s']:.2f}s), "
            f"load {os.getloadavg()[0]:.1f}"
        )
    bare = statistics.median(rates["bare"])
    ratio = statistics.median(rates["lightning"]) / bare
    return {
        "repeat": repeat,
        "triplets_per_epoch": b["samples"],
        "steps": -(-b["samples"] // batch_size),
        "bare_triplets_per_s": spread(rates["bare"], 0),
        "lightning_triplets_per_s": spread(rates["lightning"], 0),
        "lightning_end_to_end_triplets_per_s": spread(rates["end_to_end"], 0),
        "ratio": round(ratio, 3),
        "ratio_paired": spread(rates["paired"]),
        "end_to_end_ratio": round(statistics.median(rates["end_to_end"]) / bare, 3),
        "max_weight_diff_after_epoch": weight_diff,
        "target_met": ratio >= TARGET_RATIO,
    }


def model_summary() -> dict[str, Any]:
    cfg = neumf_config()
    net = {k: v for k, v in OmegaConf.to_container(cfg.net).items() if k not in SIZED_BY_DATA}
    return net | {"lr": cfg.optimizer.lr, "l2_reg": cfg.l2_reg}


def table(report: dict[str, Any]) -> Table:
    out = Table(title="NeuMF training, triplets/s: median (min-max) of n repeats")
    cols = ("threads", "batch", "n", "bare loop", "Lightning in-loop", "ratio", "Lightning e2e")
    for col in (*cols, "ok"):
        out.add_column(col, justify="right")

    def cell(s: dict[str, Any]) -> str:
        return f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"

    for threads, batch, row in sorted_rows(report):
        paired = row["ratio_paired"]
        out.add_row(
            threads,
            batch,
            str(row["repeat"]),
            cell(row["bare_triplets_per_s"]),
            cell(row["lightning_triplets_per_s"]),
            f"{row['ratio']:.3f} ({paired['min']:.2f}-{paired['max']:.2f})",
            f"{row['lightning_end_to_end_triplets_per_s']['median']:,.0f} "
            f"(x{row['end_to_end_ratio']:.2f})",
            "yes" if row["target_met"] else "NO",
        )
    return out


def quiet_lightning() -> None:
    """Lightning's start-up notes and data-loader hints would drown the table."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # after its import sets INFO
    for pattern in ("does not have many workers", "logging interval", "LeafSpec", "__len__"):
        warnings.filterwarnings("ignore", f".*{pattern}.*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_run_options(parser, BATCH_SIZES)
    parser.add_argument(
        "--triplets", type=int, default=0, help="triplets per run (0: one whole epoch, ~227k)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 4k triplets, 1 repeat")
    args = parser.parse_args()
    warmup = WARMUP_BATCHES
    if args.quick:
        args.repeat, args.triplets, warmup = 1, args.triplets or 4_096, 4
    quiet_lightning()
    processed = synthetic_processed()
    report: dict[str, Any] = {
        "machine": machine(),
        "repeat": args.repeat,
        "model": model_summary(),
        "timing": (
            "in-loop: on_train_epoch_start to the last optimizer step (RecommenderModule's own "
            "train_samples / train_seconds; includes sampling the epoch), the target's number; "
            "end-to-end: Trainer construction + trainer.fit (setup, sampler, val set, teardown)"
        ),
        "target": f"Lightning in-loop >= {TARGET_RATIO} x bare loop at every batch size",
        "results": earlier_report("train_throughput").get("results", {}) if args.merge else {},
    }
    for threads in args.threads:
        torch.set_num_threads(threads)
        rows = report["results"].setdefault(str(threads), {})
        for batch_size in args.batch_sizes:
            limit = -(-args.triplets // batch_size) if args.triplets else None
            rows[str(batch_size)] = measure(processed, batch_size, args.repeat, limit, warmup)
            path = write_result("train_throughput", finish(report), quick=args.quick)
    console.print(f"wrote {path}")
    Console(width=130).print(table(report))


if __name__ == "__main__":
    main()
