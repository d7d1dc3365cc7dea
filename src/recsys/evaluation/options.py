"""recsys-eval's settings and their defaults, in plain stdlib types: the `eval` group's
schema (`recsys.config.EvalOptions`) and `evaluate_checkpoint` both take them from here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from recsys.evaluation import DEFAULT_KS


class Protocol(StrEnum):
    full = "full"
    sampled = "sampled"


@dataclass(frozen=True)
class EvalSettings:
    # Cutoffs; topk.parquet keeps max(k) items per user.
    k: tuple[int, ...] = DEFAULT_KS
    # full: rank all unseen items; sampled: the NCF paper's held-out item against 99 sampled
    # negatives.
    protocol: Protocol = Protocol.full
    batch_size: int = 1024
    # The sampled protocol's negatives per held-out item.
    n_negatives: int = 99
    # The seed of the sampled protocol's draws and of the bootstrap.
    seed: int = 0
    # Where scoring runs: auto (the GPU when torch sees one), cpu, cuda or cuda:N.
    device: str = "auto"
    # intervals.json: percentile-bootstrap resamples of the test users per metric (0: none).
    bootstrap: int = 1000
    confidence: float = 0.95
