"""The end of `make demo`: what was measured, where the MLflow run is, what to run next."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from recsys.models.checkpoint import read_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--eval-dir", type=Path, required=True)
    parser.add_argument("--processed-dir", type=Path, required=True)
    parser.add_argument("--bento-tag", required=True, help="the tag recsys-package printed")
    args = parser.parse_args()
    console = Console(soft_wrap=True)  # commands stay on one line, ready to copy
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
    console.print(
        f"BentoML model: {args.bento_tag} (the newest `recsys`, which `make serve` serves)"
    )
    user = sample_user(args.processed_dir)
    console.print("Serve it:    make serve   (or: .venv/bin/bentoml serve, from this directory)")
    console.print(
        "Query it:    curl -s -X POST http://127.0.0.1:3000/recommend "
        f'-H \'Content-Type: application/json\' -d \'{{"user_id": "{user}", "k": 10}}\''
    )
    console.print(
        "Build Bento: make bento   (then `bentoml containerize recsys:latest`; needs Docker)"
    )


def sample_user(processed_dir: Path) -> str:
    """A user with a test interaction: known to the model, so the answer is personalised."""
    first = pl.read_parquet(processed_dir / "test.parquet", columns=["user_idx"], n_rows=1)
    users = pl.read_parquet(processed_dir / "users.parquet")
    return users.filter(pl.col("user_idx") == first["user_idx"][0])["user_id"][0]


if __name__ == "__main__":
    main()
