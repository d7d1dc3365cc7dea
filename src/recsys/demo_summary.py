"""The end of `make demo`: what was measured, where the MLflow run is, what to run next."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from recsys.models.checkpoint import read_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--eval-dir", type=Path, required=True)
    args = parser.parse_args()
    console = Console()
    metrics = json.loads((args.eval_dir / "metrics.json").read_text())
    table = Table(title="Test metrics", caption=f"{metrics['n_users']} users, full ranking")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(metrics.items()):
        if key.startswith("test/"):
            table.add_row(key, f"{value:.4f}")
    console.print(table)
    best = args.run_dir / "checkpoints" / "best.ckpt"
    run_id = read_checkpoint(best)["recsys"].get("mlflow_run_id")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    console.print(f"Checkpoint:  {best}")
    console.print(f"Top-k lists: {args.eval_dir / 'topk.parquet'}")
    if run_id:
        console.print(f"MLflow run:  {run_id} (experiment 'recsys', registered model 'recsys')")
    console.print(f"Browse runs: .venv/bin/mlflow ui --backend-store-uri {uri}")


if __name__ == "__main__":
    main()
