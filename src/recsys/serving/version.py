"""The served model's version, defined once: responses, /readyz, the Prometheus series and the
feedback log all carry it, so a click can be credited to the version that made the list."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# `recsys-package model_uri=...` records the registered version it copied as models:/NAME/N
# (an alias already resolved to its number).
_REGISTERED = re.compile(r"^models:/[^/@]+/(?P<version>\d+)$")


def served_version(tag: str, info: Mapping[str, Any]) -> str:
    """The MLflow registry's version number (e.g. "3") when the model was packaged from the
    registry, else the version part of its BentoML tag `recsys:<version>`: the number is what
    promotion and rollback speak of, the tag is all a checkpoint's model has."""
    if info.get("source_kind") == "mlflow":
        match = _REGISTERED.match(str(info.get("source", "")))
        if match is not None:
            return match["version"]
    version = tag.partition(":")[2]
    if not version:
        raise ValueError(f"'{tag}' is not a resolved BentoML tag NAME:VERSION")
    return version
