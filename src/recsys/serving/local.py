"""`bentoml serve` as a subprocess, the way a user starts it (from the project root, so it
reads bentofile.yaml): the tests and the load benchmark talk to a real server through it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# The checkout this module runs from (an editable install, as `make setup` makes).
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def answers(url: str) -> bool:
    """Whether `url` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start_server(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`bentoml serve` on 127.0.0.1:`port` with `env` added to this environment, in a process
    group of its own (its workers too, for `stop_server`); output goes to `log`."""
    bentoml = Path(sys.executable).parent / "bentoml"
    with log.open("w") as out:
        return subprocess.Popen(
            [str(bentoml), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float) -> None:
    """Return once `base`/readyz answers 200; raise with the log's tail if the server exits
    or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not answers(f"{base}/readyz"):
        if proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited:\n{log.read_text()[-5000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready in {timeout:.0f} s:\n{log.read_text()[-5000:]}")
        time.sleep(0.5)


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM to the server's whole process group (SIGKILL after `timeout` seconds)."""
    with contextlib.suppress(ProcessLookupError):  # already gone, workers included
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def bentoml_serve(
    port: int, env: dict[str, str], log: Path, ready_timeout: float = 180
) -> Iterator[str]:
    """Serve on 127.0.0.1:`port` with `env` added to this environment; yields the base URL once
    /readyz answers, and stops the whole process group on exit. Output goes to `log`."""
    proc = start_server(port, env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base, log, ready_timeout)
        yield base
    finally:
        stop_server(proc)
