"""recsys-recommend's settings and their defaults, in plain stdlib types: the config schema
(`recsys.config.RecommendConfig`) and the job (`recsys.batch.run`) both take them from here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Retrieval(StrEnum):
    auto = "auto"  # the model's ANN index when it has one, else exact
    exact = "exact"  # every item scored by the full model
    ann = "ann"  # ANN candidates re-ranked exactly by the full model


@dataclass
class ScoringOptions:
    # `all` (every user of the model, in its index order) or a parquet/csv/txt file of ids.
    users: str = "all"
    k: int = 10
    # Leave out items the user interacted with in any split.
    exclude_seen: bool = True
    # Processes scoring parts side by side (CPU); each loads the model once.
    workers: int = 1
    # torch threads per process (null: the CPUs shared out among the workers). Scores are
    # byte-identical between runs with the same thread count; float sums may associate
    # differently with another.
    threads: int | None = None
    # auto (the GPU when torch sees one), cpu, cuda or cuda:N.
    device: str = "auto"
    # I/N: this process scores parts I, I+N, I+2N, ... (parts are numbered over all users).
    shard: str = "0/1"
    retrieval: Retrieval = Retrieval.auto
    # Users per part file: the unit of resumption and of the progress bar.
    part_users: int = 20_000
    # Users scored together against the catalogue (as recsys-eval's eval.batch_size).
    batch_users: int = 1024
