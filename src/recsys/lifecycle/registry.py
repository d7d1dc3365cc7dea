"""The MLflow model registry side of promotion: which version holds an alias, what data a
version was trained on, moving aliases and recording decisions as version tags."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.errors import RecsysError

log = logging.getLogger(__name__)

_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
TAG_PREFIX = "promotion."


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str | None
    processed_dir: str | None  # where its training run read the data (a run tag)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def client():  # -> MlflowClient, imported late: MLflow's import costs seconds
    from mlflow import MlflowClient

    return MlflowClient()


def parse_version_uri(uri: str) -> tuple[str, str]:
    """(name, version) of `models:/NAME/N`."""
    match = _VERSION_URI.match(str(uri).strip())
    if match is None:
        raise RecsysError(
            f"model_uri must be a registered version, models:/NAME/N (e.g. models:/recsys/3), "
            f"got '{uri}'"
        )
    return match["name"], match["version"]


def get_version(name: str, version: str) -> RegisteredVersion:
    """The registered version, with the processed directory its training run recorded."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow_client = client()
    try:
        mv = mlflow_client.get_model_version(name, version)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise RecsysError(
                f"the MLflow store at {mlflow.get_tracking_uri()} could not be read: {err}"
            ) from err
        raise RecsysError(
            f"no registered model version models:/{name}/{version} in MLflow at "
            f"{mlflow.get_tracking_uri()} (set MLFLOW_TRACKING_URI to the store it is "
            f"registered in): {err}"
        ) from err
    processed_dir = None
    if mv.run_id:
        try:
            processed_dir = mlflow_client.get_run(mv.run_id).data.tags.get("processed_dir")
        except Exception:  # a deleted run: the caller asks for data.processed_dir instead
            processed_dir = None
    return RegisteredVersion(name, str(mv.version), mv.run_id, processed_dir)


def version_by_alias(name: str, alias: str) -> RegisteredVersion | None:
    """The version `alias` points at, None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client().get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return get_version(name, str(mv.version))


def move_aliases(name: str, champion: str, previous: str | None, aliases: tuple[str, str]) -> None:
    """Point `aliases[1]` (previous) at the old champion first, then `aliases[0]` at the new
    one: an interruption in between leaves the champion where it was."""
    mlflow_client = client()
    if previous is not None:
        mlflow_client.set_registered_model_alias(name, aliases[1], previous)
    mlflow_client.set_registered_model_alias(name, aliases[0], champion)


def record(version: RegisteredVersion, report: dict[str, Any], stamp: str) -> None:
    """The decision as tags on the version (the MLflow UI lists them) and the full report as
    a JSON artifact of its training run, one file per decision (the history)."""
    tag(version, report, replace=True)
    if version.run_id:
        try:
            client().log_text(
                version.run_id, json.dumps(report, indent=2), f"promotion/{stamp}.json"
            )
        except Exception as err:  # the tags are the record; the artifact is a convenience
            log.warning("report not saved to run %s's artifacts: %s", version.run_id, err)


def tag(version: RegisteredVersion, values: dict[str, Any], replace: bool = False) -> None:
    """Set `promotion.*` tags on the version; `replace` first drops the ones of an earlier
    decision, so no figure of another comparison is left beside this one's."""
    mlflow_client = client()
    tags = flat_tags(values)
    if replace:
        old = mlflow_client.get_model_version(version.name, version.version).tags
        for key in old:
            if key.startswith(TAG_PREFIX) and key not in tags and "superseded" not in key:
                mlflow_client.delete_model_version_tag(version.name, version.version, key)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(version.name, version.version, key, value)


def flat_tags(report: dict[str, Any]) -> dict[str, str]:
    """`promotion.*` tags: strings, numbers rounded for the UI's table."""
    tags = {}
    for key, value in report.items():
        if isinstance(value, dict):
            continue
        if isinstance(value, float):
            value = f"{value:.6f}"
        tags[TAG_PREFIX + key] = "" if value is None else str(value)
    return tags


def processed_path(version: RegisteredVersion, given: str | None) -> Path:
    """The directory to evaluate on: `given`, else the one the version was trained on."""
    where = given or version.processed_dir
    if not where:
        why = (
            f"{version.uri}'s training run does not record its processed directory"
            if version.run_id
            else f"{version.uri} was registered without a training run"
        )
        raise RecsysError(f"{why}: pass data.processed_dir=DIR")
    path = Path(where)
    if not (path / "metadata.json").is_file():
        raise RecsysError(
            f"{version.uri} was trained on '{where}', which is not a processed directory here "
            "(moved, or trained on another machine?): pass data.processed_dir=DIR",
            path=where,
        )
    return path
