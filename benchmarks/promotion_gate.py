"""The promotion gate on the demo data, run as a user runs it: the default NeuMF trained for
5 epochs becomes the first champion, a weakened candidate (1 epoch) must be refused and a
better one (20 epochs) promoted, each with its paired-bootstrap interval recorded.

Every step is the real console script against a fresh SQLite MLflow store in
benchmarks/.work/promotion/; results: benchmarks/results/promotion_gate.json.

Usage: python benchmarks/promotion_gate.py [--epochs 5 1 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import WORK, console, machine, synthetic_processed, write_result

BIN = Path(sys.executable).parent


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    result.seconds = round(time.perf_counter() - start, 1)  # type: ignore[attr-defined]
    if result.returncode not in (0, 3):
        raise RuntimeError(f"{command[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, nargs=3, default=[5, 1, 20])
    args = parser.parse_args()
    processed = synthetic_processed()
    work = WORK / "promotion"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
    }
    from mlflow import MlflowClient

    steps = []
    for version, epochs in enumerate(args.epochs, start=1):
        trained = run(
            [
                str(BIN / "recsys-train"), f"data.processed_dir={processed}",
                f"hydra.run.dir={work / f'train-{version}'}", f"trainer.max_epochs={epochs}",
                "callbacks.rich_progress_bar=null", "trainer.enable_progress_bar=false",
            ],
            env, work,
        )  # fmt: skip
        promoted = run(
            [str(BIN / "recsys-promote"), f"model_uri=models:/recsys/{version}"], env, work
        )
        os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
        tags = MlflowClient().get_model_version("recsys", str(version)).tags
        record = {k.removeprefix("promotion."): v for k, v in tags.items() if "promotion." in k}
        steps.append(
            {
                "version": version,
                "epochs": epochs,
                "train_seconds": trained.seconds,  # type: ignore[attr-defined]
                "promote_seconds": promoted.seconds,  # type: ignore[attr-defined]
                "exit_code": promoted.returncode,
                "report": promoted.stdout.strip().splitlines()[-3:],
                "tags": record,
            }
        )
        console.print(f"v{version} ({epochs} epochs): " + " | ".join(steps[-1]["report"]))
    expected = ["first", "refused", "promoted"]
    report = {
        "data": str(processed),
        "steps": steps,
        "target_met": [s["tags"].get("decision") for s in steps] == expected,
        "machine": machine(),
    }
    console.print(f"written to {write_result('promotion_gate', report)}")


if __name__ == "__main__":
    main()
