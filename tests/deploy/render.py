"""Render the Helm chart offline (no helm binary, no cluster) into Kubernetes objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "recsys"


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = "recsys",
    namespace: str = "default",
    revision: int = 1,
) -> list[dict[str, Any]]:
    """The objects an install of the chart with `values` creates, `helm test` hooks included.

    Values go through the chart's schema as in `helm install`; bad ones raise HelmValuesError,
    a failing template (e.g. a `required` value) HelmRenderError.
    """
    with helm.Chart.load(CHART) as chart:
        files = chart.render(
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
    """The shell command every training node runs (`/bin/sh -c <it>`); needs training on."""
    (job,) = (obj for obj in render(values) if obj["kind"] == "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-c"]
    return container["args"][0]
