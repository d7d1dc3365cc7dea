"""The service's own Prometheus series, exposed at /metrics beside BentoML's: each carries the
model version, so dashboards compare versions (a canary against the champion) and the online
click-through rate is a ratio of two series (docs/SERVING.md).

prometheus_client directly (what BentoML 1.4 recommends; `bentoml.metrics` is its deprecated
alias): BentoML's /metrics aggregates every worker's series from PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge


@dataclass(frozen=True)
class ServiceMetrics:
    model_info: Gauge  # {model, model_version}: 1 for the model served
    recommendations: Counter  # {endpoint, model_version, fallback}: lists served
    feedback_events: Counter  # {type, model_version}: events written to the log


@functools.cache
def service_metrics() -> ServiceMetrics:
    """The series, registered once per process. Called from the service, never at import: the
    serving parent imports the service module too, and prometheus_client must be first
    imported where BentoML has set PROMETHEUS_MULTIPROC_DIR (its workers)."""
    from prometheus_client import Counter, Gauge

    return ServiceMetrics(
        # Max over the live workers: one series per model, without a pid label.
        model_info=Gauge(
            "recsys_model_info",
            "The model this server answers with (always 1)",
            ["model", "model_version"],
            multiprocess_mode="livemax",
        ),
        recommendations=Counter(
            "recsys_recommendations",
            "Recommendation lists served; fallback is popular for users the model does not know",
            ["endpoint", "model_version", "fallback"],
        ),
        feedback_events=Counter(
            "recsys_feedback_events",
            "Feedback events written to the log, by the version that made the recommendation",
            ["type", "model_version"],
        ),
    )
