"""recsys-promote's settings and their defaults, in plain stdlib types: the config schema
(`recsys.config.PromoteConfig`) and `recsys.lifecycle.promote` both take them from here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from recsys.errors import RecsysError

CHAMPION = "champion"
PREVIOUS = "previous"
_METRIC = re.compile(r"^test/(?P<kind>recall|ndcg)@(?P<k>\d+)$")


@dataclass(frozen=True)
class GateSettings:
    # What the candidate must win on: test/ndcg@K or test/recall@K (full ranking).
    metric: str = "test/ndcg@10"
    # The whole confidence interval of (candidate - champion) must lie above this.
    margin: float = 0.0
    # Promote whatever the comparison says (recorded as forced).
    force: bool = False
    # Paired percentile bootstrap over test users.
    bootstrap: int = 1000
    confidence: float = 0.95
    seed: int = 0
    batch_size: int = 1024
    # Where scoring runs: auto (the GPU when torch sees one), cpu, cuda or cuda:N.
    device: str = "auto"

    def metric_k(self) -> tuple[str, int]:
        """("ndcg" | "recall", K) of `metric`, refused in words when it is neither."""
        match = _METRIC.match(self.metric)
        if match is None or not 1 <= int(match["k"]) <= 1000:
            raise RecsysError(
                f"metric must be test/ndcg@K or test/recall@K with K in 1..1000, got "
                f"'{self.metric}'"
            )
        return match["kind"], int(match["k"])

    def validate(self) -> None:
        self.metric_k()
        if self.bootstrap < 100:
            raise RecsysError(f"bootstrap must be >= 100 resamples, got {self.bootstrap}")
        if not 0 < self.confidence < 1:
            raise RecsysError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.batch_size < 1:
            raise RecsysError(f"batch_size must be >= 1, got {self.batch_size}")
