"""DDP inside Hydra: make Lightning's process launcher work in multirun sweeps.

Lightning starts DDP ranks 1..N-1 by re-running `sys.argv` with `hydra.run.dir` set to the
parent's *run* dir. In a multirun (`-m`) that re-runs the whole sweep in every child, in the
wrong directory (lightning-hydra-template #393, Lightning #11300), and the variables the
launcher leaves in `os.environ` (LOCAL_RANK, ...) make the next job think it was launched
externally and wait forever. `ddp_job` fixes both around one job.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict, read_write

# Set by Lightning's launcher in the parent for its children; stale once the job ends.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def launched_externally() -> bool:
    """This process is a DDP child (of Lightning's launcher or of torchrun)."""
    return "LOCAL_RANK" in os.environ


@contextlib.contextmanager
def ddp_job(output_dir: str) -> Iterator[None]:
    """Within a Hydra job: children re-run just this job's overrides into `output_dir`."""
    if launched_externally() or not HydraConfig.initialized():
        yield
        return
    hydra_cfg = HydraConfig.get()
    saved_argv = list(sys.argv)
    saved_env = {key: os.environ.get(key) for key in LAUNCHER_ENV}
    saved_run_dir = hydra_cfg.run.dir
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = str(output_dir)
    try:
        yield
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.run.dir = saved_run_dir
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def leave_process_group() -> None:
    """Every rank, after the last collective: rank 0 then works alone (metrics.json, MLflow),
    and torchmetrics there (finish_run's test-sample evaluation) would sync with the ranks
    that have exited, and fail ("Connection closed by peer") or hang, under torchrun and
    Lightning's launcher alike. Without a process group it computes locally."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wait_for_children(trainer) -> None:
    """Let ranks 1..N-1 exit before rank 0 prints its last line (stdout is shared)."""
    launcher = getattr(trainer.strategy, "launcher", None)
    for proc in getattr(launcher, "procs", []) or []:
        with contextlib.suppress(Exception):
            proc.wait(timeout=120)
