"""Render the Helm charts offline (no helm binary, no cluster) into Kubernetes objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHARTS = Path(__file__).resolve().parents[2] / "deploy" / "helm"
SERVING_CHART = CHARTS / "recsys"
TRAINING_CHART = CHARTS / "recsys-training"
BATCH_CHART = CHARTS / "recsys-batch"


def render(
    values: dict[str, Any] | None = None,
    *,
    chart: Path = SERVING_CHART,
    release: str = "recsys",
    namespace: str = "default",
    revision: int = 1,
) -> list[dict[str, Any]]:
    """The objects an install of `chart` with `values` creates, `helm test` hooks included.

    Values go through the chart's schema as in `helm install`; bad ones raise HelmValuesError,
    a failing template (e.g. a `required` value) HelmRenderError.
    """
    with helm.Chart.load(chart) as loaded:
        files = loaded.render(
            values, name=release, namespace=namespace, revision=revision, is_install=True
        )
    return [
        doc
        for path, text in sorted(files.items())
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def train_command(values: dict[str, Any]) -> str:
    """The shell command every node of the training chart's Indexed Job runs (`/bin/sh -c <it>`).

    Values written for both charts are accepted: keys the training chart lacks (the service's
    `image`, ...) are dropped, so one values file can describe a whole deployment.
    """
    own = yaml.safe_load((TRAINING_CHART / "values.yaml").read_text())
    training_values = {key: value for key, value in values.items() if key in own}
    (job,) = (obj for obj in render(training_values, chart=TRAINING_CHART) if obj["kind"] == "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    return container["args"][0]
