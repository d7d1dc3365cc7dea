"""Training throughput on the demo data, two comparisons, each side by side in one run:

1. This checkout against the baseline commit (before the fast-training work): each side trains
   its own default NeuMF and MF for one epoch with its own defaults (batch size, optimizer), in
   its own process (train_worker.py, the tree's own `recsys-train` code).
2. The real Lightning path (RecommenderModule + RecsysDataModule) against a bare PyTorch loop
   doing the same work, to show what Lightning costs per step: both train the default NeuMF
   from the same initial weights on the same BPRGroups epoch (same seed, so the same
   triplets), with the same optimizer and loss; their weights after the epoch are compared.

Repeats alternate the contenders so that drift in the machine's load hits both alike.
Results: benchmarks/results/train_throughput.json and tables on stdout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from common import (
    ROOT,
    WORK,
    build_neumf,
    console,
    earlier_report,
    machine,
    neumf_config,
    spread,
    synthetic_processed,
    write_result,
)
from hydra.utils import instantiate
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from recsys.data.datamodule import RecsysDataModule
from recsys.data.sampling import BPRGroups, NegativeSampler
from recsys.training.callbacks import Throughput
from recsys.training.loss import bpr_loss, triplets
from recsys.training.module import RecommenderModule, lr_scale

# The commit before the fast-training work: the "today" every speed-up is measured against.
BASELINE = "94fa464"
# In-loop triplets/s of this checkout's default over the baseline's default, per model.
TARGET_VS_BASELINE = {"neumf": 10.0, "mf": 10.0}
TARGET_LIGHTNING_RATIO = 0.9  # Lightning in-loop triplets/s over the bare loop's
WARMUP_BATCHES = 8
# One epoch over 10M synthetic reviews on 2 cores: at most this long and this much memory.
LARGE_EPOCH_SECONDS, LARGE_PEAK_RSS_MB = 60, 4096
WORKER = Path(__file__).with_name("train_worker.py")
# OpenMP's wait policy decides what a step of many small kernels costs, so the workers run
# under both: "passive" (threads sleep between kernels; what this repository's Makefile
# exports, for shared machines) and "default" (libgomp's own: threads spin a while first;
# what `recsys-train` gets when run on its own).
WAIT_POLICIES: dict[str, str | None] = {"passive": "PASSIVE", "default": None}
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


def default_datamodule(processed: Path) -> RecsysDataModule:
    """The DataModule `recsys-train` builds by default (its defaults are the config's)."""
    datamodule = RecsysDataModule(str(processed), seed=0)
    datamodule.load()  # recsys-train loads eagerly too, before building the trainer
    return datamodule


def lightning_run(processed: Path, limit_batches: int | None) -> dict[str, Any]:
    """One `trainer.fit` epoch; in-loop time is recsys-train's Throughput callback's (first
    batch to last step)."""
    cfg = neumf_config()
    datamodule = default_datamodule(processed)
    net = build_neumf(datamodule.n_users, datamodule.n_items)
    module = RecommenderModule(
        net,
        optimizer=instantiate(cfg.optimizer),
        l2_reg=cfg.l2_reg,
        ks=list(cfg.ks),
        lr_scaling=cfg.lr_scaling,
        lr_reference_batch=cfg.lr_reference_batch,
        lr_scaling_max_batch=cfg.get("lr_scaling_max_batch"),
    )
    start = time.perf_counter()
    throughput = Throughput()
    trainer = L.Trainer(**trainer_kwargs(limit_batches), callbacks=[throughput])
    torch.manual_seed(DROPOUT_SEED)
    trainer.fit(module, datamodule=datamodule)
    end_to_end = time.perf_counter() - start
    return {
        "samples": throughput.samples,
        "in_loop_s": throughput.seconds,
        "end_to_end_s": end_to_end,
        "batch_size": datamodule.train_batch_size,
        "net": net,
    }


def bare_run(processed: Path, limit_batches: int | None) -> dict[str, Any]:
    """The same epoch as a plain loop: forward, loss, backward, optimizer step, nothing else."""
    cfg = neumf_config()
    datamodule = default_datamodule(processed)
    train = datamodule.load().train
    batch_size = datamodule.train_batch_size
    sampler = NegativeSampler(train.users, train.items, datamodule.n_items)
    net = build_neumf(datamodule.n_users, datamodule.n_items)
    optimizer = instantiate(cfg.optimizer)(params=net.parameters())
    scale = lr_scale(
        batch_size, cfg.lr_scaling, cfg.lr_reference_batch, cfg.get("lr_scaling_max_batch")
    )
    for group in optimizer.param_groups:
        group["lr"] *= scale
    l2_reg = float(cfg.l2_reg)
    net.train()
    torch.manual_seed(DROPOUT_SEED)
    torch.empty((), dtype=torch.int64).random_()  # as Lightning's DataLoader draws its base seed
    start = time.perf_counter()
    batches = BPRGroups(
        train.users, train.items, sampler, batch_size, datamodule.num_negatives, seed=0
    )
    samples = 0
    for users, items in itertools.islice(batches, limit_batches):
        loss, reg = bpr_loss(net, users, items)
        optimizer.zero_grad(set_to_none=True)
        (loss + l2_reg * reg).backward()
        optimizer.step()
        samples += triplets(items)
    seconds = time.perf_counter() - start
    return {"samples": samples, "in_loop_s": seconds, "net": net}


def baseline_tree() -> Path:
    """src/ and conf/ of the baseline commit, extracted once: its own code and defaults."""
    tree = WORK / f"baseline-{BASELINE}"
    if not (tree / "src" / "recsys").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BASELINE, "src", "conf"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def worker_run(
    tree: Path | None, processed: Path, model: str, threads: int, policy: str, *overrides: str
) -> dict[str, Any]:
    """One epoch in a fresh process through `tree`'s code (None: this checkout), under the
    OpenMP wait policy `policy` (a WAIT_POLICIES key)."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if WAIT_POLICIES[policy] is not None:
        env["OMP_WAIT_POLICY"] = WAIT_POLICIES[policy]
    if tree is not None:
        env["PYTHONPATH"] = str(tree / "src")
    env.pop("RECSYS_CONFIG_DIR", None)  # each tree reads the conf/ beside its src/
    cmd = [sys.executable, str(WORKER), "--processed", str(processed), "--threads", str(threads)]
    out = subprocess.run(
        [*cmd, f"model={model}", *overrides], env=env, check=True, capture_output=True, text=True
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    expected = (tree or ROOT) / "src"
    if not Path(result["recsys_source"]).resolve().is_relative_to(expected.resolve()):
        raise SystemExit(f"worker imported {result['recsys_source']}, not {expected}")
    return result


def measure_against_baseline(
    processed: Path, model: str, repeat: int, threads: int, policy: str
) -> dict[str, Any]:
    """Each side's default `recsys-train` epoch, alternating who goes first."""
    tree = baseline_tree()
    rates: dict[str, list[float]] = {"baseline": [], "current": [], "paired": []}
    runs: dict[str, dict[str, Any]] = {}
    for r in range(repeat):
        order = ["baseline", "current"] if r % 2 == 0 else ["current", "baseline"]
        for side in order:
            code = tree if side == "baseline" else None
            runs[side] = worker_run(code, processed, model, threads, policy)
            rates[side].append(runs[side]["samples"] / runs[side]["in_loop_s"])
        rates["paired"].append(rates["current"][-1] / rates["baseline"][-1])
        console.print(
            f"{model}, {policy} wait policy, repeat {r + 1}/{repeat}: "
            f"baseline {rates['baseline'][-1]:,.0f}/s "
            f"(batch {runs['baseline']['batch_size']}), current {rates['current'][-1]:,.0f}/s "
            f"(batch {runs['current']['batch_size']}), load {os.getloadavg()[0]:.1f}"
        )
    ratio = statistics.median(rates["current"]) / statistics.median(rates["baseline"])
    return {
        "omp_wait_policy": WAIT_POLICIES[policy] or "unset",
        "repeat": repeat,
        "baseline_batch_size": runs["baseline"]["batch_size"],
        "current_batch_size": runs["current"]["batch_size"],
        "current_lr": runs["current"]["lr"],
        "baseline_triplets_per_s": spread(rates["baseline"], 0),
        "current_triplets_per_s": spread(rates["current"], 0),
        "ratio": round(ratio, 2),
        "ratio_paired": spread(rates["paired"], 2),
        "target": TARGET_VS_BASELINE.get(model),
        "target_met": ratio >= TARGET_VS_BASELINE.get(model, 0.0),
    }


def max_weight_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return max(float((x - y).abs().max()) for x, y in pairs)


def measure_lightning_overhead(
    processed: Path, repeat: int, limit: int | None, warmup: int
) -> dict[str, Any]:
    """Lightning against the bare loop on the same epoch, at the default batch size."""
    lightning_run(processed, warmup)
    bare_run(processed, warmup)
    rates: dict[str, list[float]] = {"bare": [], "lightning": [], "end_to_end": [], "paired": []}
    weight_diff = 0.0
    for r in range(repeat):
        # Alternate who goes first: a load spike then penalises neither contender alone.
        runs = [bare_run, lightning_run] if r % 2 == 0 else [lightning_run, bare_run]
        done = {run.__name__: run(processed, limit) for run in runs}
        b, lt = done["bare_run"], done["lightning_run"]
        if b["samples"] != lt["samples"]:
            raise SystemExit(f"contenders saw {b['samples']} vs {lt['samples']} triplets")
        weight_diff = max(weight_diff, max_weight_diff(b["net"], lt["net"]))
        rates["bare"].append(b["samples"] / b["in_loop_s"])
        rates["lightning"].append(lt["samples"] / lt["in_loop_s"])
        rates["end_to_end"].append(lt["samples"] / lt["end_to_end_s"])
        rates["paired"].append(rates["lightning"][-1] / rates["bare"][-1])
        console.print(
            f"Lightning vs bare, repeat {r + 1}/{repeat} (batch {lt['batch_size']}): "
            f"bare {rates['bare'][-1]:,.0f}/s, lightning {rates['lightning'][-1]:,.0f}/s "
            f"in-loop, {rates['end_to_end'][-1]:,.0f}/s end-to-end, "
            f"load {os.getloadavg()[0]:.1f}"
        )
    ratio = statistics.median(rates["lightning"]) / statistics.median(rates["bare"])
    return {
        "repeat": repeat,
        "batch_size": lt["batch_size"],
        "triplets_per_epoch": b["samples"],
        "bare_triplets_per_s": spread(rates["bare"], 0),
        "lightning_triplets_per_s": spread(rates["lightning"], 0),
        "lightning_end_to_end_triplets_per_s": spread(rates["end_to_end"], 0),
        "ratio": round(ratio, 3),
        "ratio_paired": spread(rates["paired"]),
        "max_weight_diff_after_epoch": weight_diff,
        "target_met": ratio >= TARGET_LIGHTNING_RATIO,
    }


def measure_large(n_reviews: int, threads: int) -> dict[str, Any]:
    """One epoch of the default NeuMF over `n_reviews` synthetic reviews, in its own process
    (its peak RSS is the run's), under each wait policy: with the default negatives, and
    with one per interaction."""
    processed = synthetic_processed(n_reviews)
    rows = {}
    settings = (("default", ()), ("one_negative", ("data.num_negatives=1",)))
    for (setting, overrides), policy in itertools.product(settings, WAIT_POLICIES):
        label = f"{setting}, {policy} wait policy"
        run = worker_run(None, processed, "neumf", threads, policy, *overrides)
        rows[label] = {
            "overrides": list(overrides),
            "triplets": run["samples"],
            "batch_size": run["batch_size"],
            "epoch_in_loop_s": round(run["in_loop_s"], 1),
            "end_to_end_s": round(run["end_to_end_s"], 1),
            "triplets_per_s": round(run["samples"] / run["in_loop_s"]),
            "peak_rss_mb": round(run["peak_rss_mb"]),
        }
        rows[label]["target_met"] = (
            run["in_loop_s"] <= LARGE_EPOCH_SECONDS and run["peak_rss_mb"] <= LARGE_PEAK_RSS_MB
        )
        console.print(f"{n_reviews:,} reviews, {label}: {rows[label]}")
    train_rows = json.loads((processed / "metadata.json").read_text())["n_train"]
    return {"n_reviews": n_reviews, "n_train": train_rows, **rows}


def model_summary() -> dict[str, Any]:
    cfg = neumf_config()
    net = {k: v for k, v in OmegaConf.to_container(cfg.net).items() if k not in SIZED_BY_DATA}
    return net | {"optimizer": OmegaConf.to_container(cfg.optimizer), "l2_reg": cfg.l2_reg}


def cell(s: dict[str, Any]) -> str:
    return f"{s['median']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f})"


def tables(report: dict[str, Any]) -> list[Table]:
    versus = Table(title=f"In-loop triplets/s against commit {BASELINE}: median (min-max)")
    for col in ("model", "n", "baseline", "batch", "this checkout", "batch", "ratio", "target"):
        versus.add_column(col, justify="right")
    for label, row in report["vs_baseline"].items():
        versus.add_row(
            label,
            str(row["repeat"]),
            cell(row["baseline_triplets_per_s"]),
            str(row["baseline_batch_size"]),
            cell(row["current_triplets_per_s"]),
            str(row["current_batch_size"]),
            f"{row['ratio']:.2f}x",
            f">= {row['target']}x: {'yes' if row['target_met'] else 'NO'}",
        )
    overhead = Table(title="Default NeuMF, triplets/s: Lightning against a bare loop")
    for col in ("batch", "n", "bare loop", "Lightning in-loop", "ratio", "Lightning e2e", "ok"):
        overhead.add_column(col, justify="right")
    row = report.get("lightning_vs_bare")
    if row:
        paired = row["ratio_paired"]
        overhead.add_row(
            str(row["batch_size"]),
            str(row["repeat"]),
            cell(row["bare_triplets_per_s"]),
            cell(row["lightning_triplets_per_s"]),
            f"{row['ratio']:.3f} ({paired['min']:.2f}-{paired['max']:.2f})",
            cell(row["lightning_end_to_end_triplets_per_s"]),
            "yes" if row["target_met"] else "NO",
        )
    large = report.get("large_epoch")
    epoch = Table(title=f"One NeuMF epoch over {large['n_reviews']:,} reviews" if large else "")
    for col in ("settings", "triplets", "batch", "in-loop s", "triplets/s", "peak RSS MB", "ok"):
        epoch.add_column(col, justify="right")
    for label, row in (large or {}).items():
        if isinstance(row, dict):
            epoch.add_row(
                label,
                f"{row['triplets']:,}",
                str(row["batch_size"]),
                str(row["epoch_in_loop_s"]),
                f"{row['triplets_per_s']:,}",
                str(row["peak_rss_mb"]),
                "yes" if row["target_met"] else "NO",
            )
    return [versus, overhead, *([epoch] if large else [])]


def quiet_lightning() -> None:
    """Lightning's start-up notes and data-loader hints would drown the table."""
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # after its import sets INFO
    for pattern in ("does not have many workers", "logging interval", "LeafSpec", "__len__"):
        warnings.filterwarnings("ignore", f".*{pattern}.*")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, every contender")
    parser.add_argument("--models", nargs="*", default=list(TARGET_VS_BASELINE))
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the last run's baseline rows not redone (and its large epoch with --large 0)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, short epochs")
    parser.add_argument(
        "--large",
        type=int,
        default=10_000_000,
        help="also time one epoch over this many synthetic reviews (0: skip; cached)",
    )
    args = parser.parse_args()
    limit, warmup = (None, WARMUP_BATCHES) if not args.quick else (8, 2)
    if args.quick:
        args.repeat = 1
    torch.set_num_threads(args.threads)
    quiet_lightning()
    processed = synthetic_processed()
    earlier = earlier_report("train_throughput")  # read before this run saves its first part
    report: dict[str, Any] = {
        "machine": machine(),
        "model": model_summary(),
        "data": str(processed.relative_to(ROOT)),
        "timing": (
            "in-loop: on_train_epoch_start to the last optimizer step (recsys-train's Throughput "
            "callback: samples / seconds; includes sampling the epoch); end-to-end: Trainer "
            "construction + trainer.fit (setup, sampler, teardown)"
        ),
        "targets": {
            "vs_baseline": TARGET_VS_BASELINE,
            "lightning_vs_bare": f">= {TARGET_LIGHTNING_RATIO}",
            "large_epoch": f"<= {LARGE_EPOCH_SECONDS} s, <= {LARGE_PEAK_RSS_MB} MB peak RSS",
        },
        "vs_baseline": earlier.get("vs_baseline", {}) if args.merge else {},
    }
    for model, policy in itertools.product(args.models, WAIT_POLICIES):
        row = measure_against_baseline(processed, model, args.repeat, args.threads, policy)
        report["vs_baseline"][f"{model}, {policy} wait policy"] = row
        write_result("train_throughput", finish_report(report), quick=args.quick)
    report["lightning_vs_bare"] = measure_lightning_overhead(processed, args.repeat, limit, warmup)
    write_result("train_throughput", finish_report(report), quick=args.quick)
    if args.large and not args.quick:
        report["large_epoch"] = measure_large(args.large, args.threads)
    elif args.merge and earlier.get("large_epoch"):
        report["large_epoch"] = earlier["large_epoch"]
    path = write_result("train_throughput", finish_report(report), quick=args.quick)
    console.print(f"wrote {path}")
    for table in tables(report):
        Console(width=130).print(table)


def finish_report(report: dict[str, Any]) -> dict[str, Any]:
    """Verdict over what has been measured so far (each part is saved as soon as it is done)."""
    large = report.get("large_epoch") or {}
    rows = [
        *report["vs_baseline"].values(),
        report.get("lightning_vs_bare") or {},
        *(row for row in large.values() if isinstance(row, dict)),
    ]
    report["target_met"] = all(row.get("target_met", True) for row in rows)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


if __name__ == "__main__":
    main()
