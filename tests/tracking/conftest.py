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
from recsys.training.run import train
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
    """`recsys.training.run.train` on the composed train config, logging to `tracking_uri`."""
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


# The server binaries the fixture runs, and where Debian's `postgresql` package puts them
# (not on PATH).
PG_TOOLS = ("initdb", "pg_ctl")
DEBIAN_POSTGRES = Path("/usr/lib/postgresql")


def in_ci() -> bool:
    """Whether this is a CI run (CI=true, as `.ci/run`'s runner and CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def postgres_bin() -> Path | None:
    """The folder holding PostgreSQL's `initdb` and `pg_ctl`: on PATH, else the newest
    DEBIAN_POSTGRES/N/bin; None when there is neither."""
    on_path = [shutil.which(tool) for tool in PG_TOOLS]
    if all(on_path):
        return Path(on_path[0]).parent  # type: ignore[arg-type]
    found = [d for d in DEBIAN_POSTGRES.glob("*/bin") if all((d / t).is_file() for t in PG_TOOLS)]
    found.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else -1)
    return found[-1] if found else None


def require_postgres_bin() -> Path:
    """`postgres_bin()`, or a skip on a developer's machine, or a failure under CI=true: a
    CI machine without the server must not go green with the PostgreSQL tests unrun."""
    bindir = postgres_bin()
    if bindir is not None:
        return bindir
    missing = (
        f"PostgreSQL server binaries ({', '.join(PG_TOOLS)}) are neither on PATH nor in "
        f"{DEBIAN_POSTGRES}/*/bin; install them (Debian: apt-get install postgresql)"
    )
    if in_ci():
        pytest.fail(f"CI=true, and the PostgreSQL tracking tests cannot run: {missing}")
    pytest.skip(missing)


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """A throwaway PostgreSQL server with an empty `mlflow` database, for the session (skipped
    without the server binaries, failed instead under CI=true: see `require_postgres_bin`)."""
    bindir = require_postgres_bin()
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
        initdb, pg_ctl = str(bindir / "initdb"), str(bindir / "pg_ctl")
        pg(initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root}"
        pg(pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres")
            conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE mlflow")
            conn.close()
            # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the dev extra has psycopg2.
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
        finally:
            pg(pg_ctl, "-D", str(data), "stop", "-m", "immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)
