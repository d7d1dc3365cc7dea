"""The checks that need a GPU, as one prepared script for a lent machine (the `device` tool).

    python benchmarks/gpu_check.py --device cuda --out $OUT     # on the GPU machine
    python benchmarks/gpu_check.py --device cpu                  # the same steps here first

Steps, each through the project's own entry points (`python -m recsys.train`, ...):
1. data: synthetic reviews (demo size by default) -> a processed directory;
2. the default NeuMF with `trainer=gpu` (cpu: `trainer=cpu`), a few epochs, `logger=none`;
3. the same with `trainer=ddp trainer.devices=1` (cpu: `trainer=ddp_cpu trainer.devices=1`);
4. `recsys-eval` of step 2's best checkpoint with `eval.device=<device>`;
5. the serving path: the bundle `recsys-package` writes, loaded on the device, one ranked batch;
6. in-loop throughput of one epoch of the default NeuMF and MF on the device
   (train_worker.py), at the default batch and at 65,536.
Writes <out>/gpu_check.json (each step's result or error) and exits 1 if a step failed.

The GPU image lacks hydra-core, omegaconf and polars: carry them as Python 3.12 wheels (see the
device tool's notes) and put them on PYTHONPATH before running this script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = {
    "cuda": ("trainer=gpu", ["trainer=ddp", "trainer.devices=1"]),
    "cpu": ("trainer=cpu", ["trainer=ddp_cpu", "trainer.devices=1"]),
}


def python(*args: str, timeout: float = 1800) -> str:
    """`python -m ...` with this checkout's src/ first; returns stdout, raises with stderr."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr[-3000:]}")
    return proc.stdout


def train(processed: Path, run: Path, epochs: int, *overrides: str) -> dict[str, Any]:
    start = time.perf_counter()
    python(
        "-m", "recsys.train", f"data.processed_dir={processed}", f"hydra.run.dir={run}",
        "logger=none", "callbacks.rich_progress_bar=null", f"trainer.max_epochs={epochs}",
        *overrides,
    )  # fmt: skip
    metrics = json.loads((run / "metrics.json").read_text())
    return {"wall_s": round(time.perf_counter() - start, 1), "metrics": metrics}


def evaluate(processed: Path, ckpt: Path, out: Path, device: str) -> dict[str, Any]:
    python(
        "-m", "recsys.evaluate", f"ckpt_path={ckpt}", f"data.processed_dir={processed}",
        f"eval.output_dir={out}", f"eval.device={device}",
    )  # fmt: skip
    return json.loads((out / "metrics.json").read_text())


def serve(processed: Path, ckpt: Path, target: Path, device: str) -> dict[str, Any]:
    """What `recsys-package` writes and every serving worker loads, on `device`."""
    import polars as pl

    from recsys.packaging.bundle import load_bundle, write_bundle
    from recsys.packaging.recommend import queries, rank
    from recsys.packaging.sources import from_checkpoint

    target.mkdir(parents=True, exist_ok=True)
    write_bundle(from_checkpoint(str(ckpt), str(processed)), target)
    bundle = load_bundle(target, device)
    users = pl.read_parquet(processed / "users.parquet")["user_id"].head(256).to_list()
    start = time.perf_counter()
    answers = rank(bundle, queries(bundle, [*users, "no-such-user"], 10, True))
    return {
        "device": str(bundle.device),
        "users": len(answers),
        "seconds": round(time.perf_counter() - start, 4),
        "personalised": sum(a.fallback is None and len(a.items) == 10 for a in answers),
        "cold_user_fallback": answers[-1].fallback,
    }


def throughput(processed: Path, trainer: str) -> dict[str, Any]:
    worker = str(ROOT / "benchmarks" / "train_worker.py")
    out = {}
    for model in ("neumf", "mf"):
        for batch in ("auto", "65536"):
            line = python(
                worker, "--processed", str(processed), f"model={model}", trainer,
                f"data.batch_size={batch}",
            ).strip().splitlines()[-1]  # fmt: skip
            run = json.loads(line)
            out[f"{model}_batch_{batch}"] = {
                "batch_size": run["batch_size"],
                "triplets_per_s": round(run["samples"] / run["in_loop_s"]),
                "peak_rss_mb": round(run["peak_rss_mb"]),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", choices=sorted(TRAINERS), default="cuda")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / ".work" / "gpu")
    parser.add_argument("--n-interactions", type=int, default=300_000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    single, ddp = TRAINERS[args.device]
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="recsys-gpu-check-"))
    report: dict[str, Any] = {"device": args.device, "steps": {}}
    try:
        import torch

        report["torch"] = torch.__version__
        report["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception as err:  # report what the machine has, whatever it is
        report["torch"] = repr(err)
    ckpt = work / "train" / "checkpoints" / "best.ckpt"
    state: dict[str, Path] = {}

    def data() -> dict[str, str]:
        from common import synthetic_processed  # generated and preprocessed once, cached

        state["processed"] = synthetic_processed(args.n_interactions)
        return {"processed": str(state["processed"])}

    steps = {
        "data": data,
        "train": lambda: train(state["processed"], work / "train", args.epochs, single),
        "train_ddp": lambda: train(state["processed"], work / "ddp", args.epochs, *ddp),
        "eval": lambda: evaluate(state["processed"], ckpt, work / "eval", args.device),
        "serve": lambda: serve(state["processed"], ckpt, work / "bundle", args.device),
        "throughput": lambda: throughput(state["processed"], single),
        # The solved baselines on the device: EASE's Cholesky solve, iALS's CG sweeps.
        "train_ease": lambda: train(state["processed"], work / "ease", 1, single, "model=ease"),
        "train_ials": lambda: train(
            state["processed"], work / "ials", args.epochs, single, "model=ials"
        ),
    }
    for name, step in steps.items():
        start = time.perf_counter()
        try:
            report["steps"][name] = {"ok": True, "result": step()}
        except Exception as err:  # every step is reported; one failing does not hide the rest
            report["steps"][name] = {"ok": False, "error": repr(err)[-3000:],
                                     "traceback": traceback.format_exc()[-3000:]}  # fmt: skip
        report["steps"][name]["seconds"] = round(time.perf_counter() - start, 1)
        print(name, json.dumps(report["steps"][name])[:400], flush=True)
        (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    sys.exit(0 if all(s["ok"] for s in report["steps"].values()) else 1)


if __name__ == "__main__":
    main()
