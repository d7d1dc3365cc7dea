"""Fixtures for the tracking tests: a tiny processed dataset, real MLflow stores (SQLite and a
throwaway PostgreSQL server) and training runs composed with Hydra."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import psycopg2
import pytest
from hydra import compose, initialize_config_dir

from recsys.config import CONFIG_DIR
from recsys.train import train
from tests.helpers import free_port


@contextlib.contextmanager
def isolated_mlflow(workdir: Path, tracking_uri: str) -> Iterator[None]:
    """Run from `workdir` (MLflow puts artifacts in ./mlruns) with MLflow's process-wide URIs
    pointing at `tracking_uri`, and leave no trace of either for later tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        mp.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        mp.setenv("MLFLOW_REGISTRY_URI", tracking_uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


def train_tracked(
    workdir: Path, tracking_uri: str, processed: Path, *overrides: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`recsys.train.train` on the composed train config, logging to `tracking_uri`."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"data.processed_dir={processed}",
                "model=mf",
                "logger=mlflow",
                f"logger.mlflow.tracking_uri={tracking_uri}",
                "callbacks=checkpoint_only",
                "trainer.max_epochs=2",
                f"paths.output_dir={workdir / 'run'}",
                *overrides,
            ],
        )
    return train(cfg)


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """A throwaway PostgreSQL 15 server with an empty `mlflow` database, for the session."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not on PATH")
    # The server refuses to run as root; in /tmp (not pytest's 0700 tree) so its user can enter.
    root = Path(tempfile.mkdtemp(prefix="recsys-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def pg(*args: str) -> None:
        done = subprocess.run([*as_owner, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{args[0]} failed: {done.stderr}"

    try:
        pg("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}"
        pg("pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres")
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE mlflow")
            conn.close()
            # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the dev extra has psycopg2.
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
        finally:
            pg("pg_ctl", "-D", str(data), "stop", "-m", "immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
