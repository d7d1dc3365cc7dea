"""Shared by the training and evaluation benchmarks: cached data, the default NeuMF config,
timing statistics and atomic JSON results, so both report the same way."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work"
RESULTS = ROOT / "benchmarks" / "results"
# The config the CLI trains with: both benchmarks read it, so they follow its defaults.

console = Console(stderr=True)
# The second synthetic dataset of the quality benchmarks: stronger popularity drift between the
# train and test periods (most picks among items released in the last 90 days, and most of
# the catalogue released during the period rather than at its start).
DRIFT_SPEC = {"recent_share": 0.6, "recent_days": 90, "catalog_at_start": 0.1}


def synthetic_processed(n_reviews: int = 300_000, **spec: Any) -> Path:
    """The `make demo` data (default synthetic spec), generated and preprocessed once; `spec`
    overrides other SyntheticSpec fields (e.g. n_users=2_000 for a small smoke-test set)."""
    from recsys.data.options import PrepareOptions, SyntheticSpec
    from recsys.data.prepare import prepare_dataset
    from recsys.data.synthetic import write_reviews

    # One cache directory per spec; the default spec keeps its old name (and its cache).
    base = WORK / "_".join(
        [f"synthetic_{n_reviews}", *(f"{k}{v}" for k, v in sorted(spec.items()))]
    )
    processed = base / "processed"
    if (processed / "metadata.json").exists():
        return processed
    raw = base / "reviews.jsonl.gz"
    t = time.perf_counter()
    if not raw.exists():
        write_reviews(raw, SyntheticSpec(n_interactions=n_reviews, **spec))
    prepare_dataset(raw, processed, PrepareOptions(), console=console)
    console.print(f"prepared {n_reviews:,} synthetic reviews in {time.perf_counter() - t:.1f}s")
    return processed


def neumf_config() -> Any:
    """recsys-train's default `model` node, composed as the CLI composes it (conf/model/
    neumf.yaml over the recsys.config.ModuleConfig defaults)."""
    from hydra import compose, initialize_config_dir

    from recsys.config import CONFIG_DIR

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", ["data.processed_dir=unused", "model=neumf"]).model


def build_neumf(n_users: int, n_items: int, seed: int = 0) -> torch.nn.Module:
    """The default NeuMF, seeded so that every contender starts from the same weights."""
    from hydra.utils import instantiate

    torch.manual_seed(seed)
    return instantiate(neumf_config().net, n_users=n_users, n_items=n_items)


def spread(values: list[float], digits: int = 3) -> dict[str, Any]:
    """Median and range of repeats: the machine is shared, so one number would mislead."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "all": [round(v, digits) for v in values],
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def finish(report: dict[str, Any]) -> dict[str, Any]:
    """Verdict over the configs run so far (results[threads][batch]): each is saved as soon as
    it is measured, so a long run that is cut short keeps what it had."""
    rows = [row for by_batch in report["results"].values() for row in by_batch.values()]
    report["target_met"] = all(row["target_met"] for row in rows)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def add_run_options(parser: Any, batch_sizes: tuple[int, ...]) -> None:
    """Options both benchmarks share: repeats, batch sizes, thread counts, --merge."""
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(batch_sizes))
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[torch.get_num_threads()],
        help="torch intra-op thread counts to run (default: torch's own, one per core)",
    )
    parser.add_argument(
        "--merge", action="store_true", help="keep the last run's rows this run does not redo"
    )


def sorted_rows(report: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(threads, batch, row) of a report's results, in numeric order, for the tables."""
    return [
        (threads, batch, row)
        for threads, rows in sorted(report["results"].items(), key=lambda kv: int(kv[0]))
        for batch, row in sorted(rows.items(), key=lambda kv: int(kv[0]))
    ]


def earlier_report(name: str) -> dict[str, Any]:
    """benchmarks/results/<name>.json for --merge: a config re-measured in a later run (a slow
    thread count, a noisy batch size) replaces its row and the other rows stay."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_result(name: str, report: dict[str, Any], quick: bool = False) -> Path:
    """benchmarks/results/<name>.json, written atomically (a killed run leaves the old one);
    smoke runs go to benchmarks/.work/results/ so they never replace a real measurement."""
    from recsys.data.io import write_json

    report = {
        **report,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    path = (WORK / "results" if quick else RESULTS) / f"{name}.json"
    write_json(path, report)
    return path
