"""Multi-node DDP as the Helm chart runs it: one `torchrun` per node (the chart's Indexed Job
passes $JOB_COMPLETION_INDEX as the node rank), here two nodes on loopback with gloo on CPU.

The run must form one world of 2 processes, and yield one checkpoint set, one metrics.json,
one FINISHED MLflow run and one registered model version, all from global rank 0. The last
test checks the same rank-0-only tracking under Lightning's own DDP launcher.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from recsys.tracking.mlflow import REGISTERED_MODEL
from tests.conftest import BIN
from tests.helpers import free_port

pytestmark = pytest.mark.slow

NODES = 2
JOB_UID = "0b5e4c1e-job"
TIMEOUT_S = 240
# Tiny and quiet: one large batch per rank and epoch, a small validation sample.
SMALL = [
    "model=mf",
    "data.batch_size=16384",
    "data.val_max_users=200",
    "callbacks=checkpoint_only",
    "trainer.enable_progress_bar=false",
]


def chart_commands(port: int, runs_dir: Path, processed_dir: Path) -> list[list[str]]:
    """What each node of the Helm chart's training Job runs (rendered from the chart, CPU
    mode: gpusPerNode=0), pointed at loopback: pod 0's DNS name exists only in a cluster."""
    from tests.deploy.render import train_command

    values = {
        "image": {"repository": "recsys", "tag": "test"},
        "training": {
            "enabled": True,
            "nodes": NODES,
            "gpusPerNode": 0,
            "image": {"repository": "recsys-train"},
            "masterPort": port,
            "data": {"existingClaim": "data"},
            "processedDir": str(processed_dir),
            "runDir": str(runs_dir),
            "extraArgs": ["trainer.max_epochs=1", *SMALL],
        },
    }
    command = train_command(values)
    assert "--master-addr=recsys-train-1-0.recsys-train " in command, command
    local = re.sub(r"--master-addr=\S+", "--master-addr=127.0.0.1", command)
    return [["/bin/sh", "-c", local]] * NODES


def run_nodes(commands: list[list[str]], cwd: Path, env: dict[str, str]) -> list[tuple]:
    """Start all nodes at once; returns (returncode, stdout, stderr) per node. Past the
    timeout, or 30 s after a node failed (its peer may wait for it forever), the nodes still
    running are stopped and the test fails with everything they printed."""
    procs = []
    for rank, command in enumerate(commands):
        out, err = cwd / f"node{rank}.out", cwd / f"node{rank}.err"
        # The Indexed Job gives each pod its index and the Job's uid (the shared run dir).
        node_env = {**env, "JOB_COMPLETION_INDEX": str(rank), "JOB_UID": JOB_UID}
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(command, cwd=cwd, env=node_env, stdout=stdout, stderr=stderr)
        procs.append((proc, out, err))
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline and any(p.poll() is None for p, _, _ in procs):
        if any(p.poll() for p, _, _ in procs):  # one failed
            deadline = min(deadline, time.monotonic() + 30)
        time.sleep(0.2)
    killed = [p.pid for p, _, _ in procs if p.poll() is None]
    for proc, _, _ in procs:
        if proc.poll() is None:
            proc.terminate()  # torchrun passes it on to its worker (in a session of its own)
    for proc, _, _ in procs:
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    results = [(p.returncode, out.read_text(), err.read_text()) for p, out, err in procs]
    assert not killed, f"nodes killed after waiting (pids {killed})\n{report(results)}"
    return results


def report(results: list[tuple]) -> str:
    return "\n".join(
        f"--- node {rank}: exit {code}\n[stdout]\n{out[-4000:]}\n[stderr]\n{err[-6000:]}"
        for rank, (code, out, err) in enumerate(results)
    )


def test_two_torchrun_nodes_on_loopback(small_processed, in_tmp):
    import mlflow

    run_dir = in_tmp / "runs" / JOB_UID
    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": uri,
        "OMP_WAIT_POLICY": "PASSIVE",
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }
    commands = chart_commands(free_port(), in_tmp / "runs", small_processed)
    results = run_nodes(commands, in_tmp, env)
    details = report(results)
    assert [code for code, _, _ in results] == [0] * NODES, details
    logs = [out + err for _, out, err in results]

    # One world of 2 processes, not two single-process runs; Lightning did not spawn its own.
    assert "All distributed processes registered. Starting with 2 processes" in logs[0], details
    for rank in range(NODES):
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/{NODES}" in logs[rank], details
    assert not list(run_dir.glob("train_ddp_process_*.log")), details

    # Rank 0 alone writes the run's files and prints the metric last.
    metrics = json.loads((run_dir / "metrics.json").read_text())
    stdout0 = results[0][1].strip().splitlines()
    assert float(stdout0[-1]) == pytest.approx(metrics["val/ndcg@10"], abs=1e-6), details
    assert f"{metrics['val/ndcg@10']:.6f}" not in results[1][1], details
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["best.ckpt", "last.ckpt"], details
    # The test users were split over both ranks and summed: all of them, each once.
    test_users = _test_users(small_processed)
    assert metrics["n_users"] == test_users, details
    assert metrics["val/n_users"] == 200, details  # data.val_max_users, 100 on each rank

    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("recsys")
    assert experiment is not None, details
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, details
    (run,) = runs
    assert run.info.status == "FINISHED"
    assert run.data.metrics["val/ndcg10"] == pytest.approx(metrics["val/ndcg@10"])
    versions = client.search_model_versions(f"name='{REGISTERED_MODEL}'")
    assert [v.run_id for v in versions] == [run.info.run_id]


def _test_users(processed: Path) -> int:
    """Users a single process evaluates on test (those with test rows): DDP must match it."""
    import polars as pl

    return pl.read_parquet(processed / "test.parquet")["user_idx"].n_unique()


def test_lightning_launched_ddp_tracks_once(small_processed, in_tmp):
    """The same rank-0-only tracking under Lightning's own launcher (trainer=ddp_cpu): rank 0's
    MLflow finish (which evaluates with torchmetrics) runs after rank 1 has exited."""
    import mlflow

    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OMP_NUM_THREADS": "1"}
    env["PYTHONWARNINGS"] = "ignore"
    res = subprocess.run(
        [
            BIN / "recsys-train",
            "trainer=ddp_cpu",
            "trainer.max_epochs=1",
            "logger=mlflow",
            f"data.processed_dir={small_processed}",
            f"hydra.run.dir={in_tmp / 'run'}",
            *SMALL,
        ],
        cwd=in_tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert res.returncode == 0, res.stderr[-6000:]
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("recsys").experiment_id])
    assert run.info.status == "FINISHED"
    versions = client.search_model_versions(f"name='{REGISTERED_MODEL}'")
    assert [v.run_id for v in versions] == [run.info.run_id]
