"""recsys-eval's settings and their defaults, in plain stdlib types: the `eval` group's
schema (`recsys.config.EvalOptions`) and `evaluate_checkpoint` both take them from here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from recsys.evaluation import DEFAULT_KS


class Protocol(StrEnum):
    full = "full"
    sampled = "sampled"


@dataclass(frozen=True)
class SegmentSettings:
    """segments.json: the test metrics by user activity, item popularity and item age
    (docs/EVALUATION.md, Segments). Counts are over train + val, what the test run masks."""

    enabled: bool = True
    # [e1, e2]: low <= e1 < mid <= e2 < high interactions per user; None: the terciles of the
    # evaluated users (equally populated as far as ties allow).
    user_activity_edges: Sequence[int] | None = None
    # Cumulative interaction shares closing head and mid: an item is head while the items more
    # popular than it hold under 20% of the interactions, tail from 80% on.
    item_popularity_shares: Sequence[float] = (0.2, 0.8)
    # An item is new when its first interaction falls this many days before the test start,
    # or it has none. Val rows of items not in train are dropped as cold, so first
    # interactions are in train: a window shorter than the val period finds no item.
    new_item_days: float = 90.0


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
    segments: SegmentSettings = SegmentSettings()
