"""A model named on the command line, whatever it is, as a bundle directory on local disk:
a BentoML tag (`recsys:latest`), a registered MLflow version (`models:/recsys/3`) or alias
(`models:/recsys@champion`), a recsys-train checkpoint, or a bundle directory itself.

Names are resolved to what they point at now (`recsys:latest` to its version, an alias to its
version number), so a job records, and resumes against, one fixed model.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from recsys.errors import RecsysError
from recsys.packaging.bundle import INFO_FILE, read_info, write_bundle
from recsys.packaging.sources import fetch_registered, from_checkpoint

_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w\-]+))$")


@dataclass(frozen=True)
class LocatedModel:
    bundle_dir: Path
    name: str  # the resolved name: recsys:abcd1234, models:/recsys/3, or a file path
    kind: str  # bentoml | mlflow | checkpoint | bundle


@contextlib.contextmanager
def open_model(model: str, processed_dir: str | None = None) -> Iterator[LocatedModel]:
    """The model's bundle directory, valid inside the block (fetched or written into a
    temporary directory when it is not on disk already)."""
    model = str(model).strip()
    if not model:
        raise RecsysError("model= is empty: name a BentoML tag, models:/recsys/N or a checkpoint")
    if model.startswith("models:/"):
        with tempfile.TemporaryDirectory(prefix="recsys-model-") as tmp:
            uri = resolve_registered(model)
            yield LocatedModel(fetch_registered(uri, tmp), uri, "mlflow")
        return
    path = Path(model).expanduser()
    if path.is_dir() and (path / INFO_FILE).is_file():
        read_info(path)  # refuses other bundle formats in words
        yield LocatedModel(path, str(path.resolve()), "bundle")
        return
    if path.is_file():
        with tempfile.TemporaryDirectory(prefix="recsys-model-") as tmp:
            write_bundle(from_checkpoint(str(path), processed_dir), tmp)
            yield LocatedModel(Path(tmp), str(path.resolve()), "checkpoint")
        return
    stored = _bentoml_model(model)
    yield LocatedModel(Path(stored.path), str(stored.tag), "bentoml")


def resolve_registered(uri: str) -> str:
    """`models:/NAME@ALIAS` as the `models:/NAME/VERSION` it points at now."""
    match = _REGISTERED.match(uri)
    if match is None:
        raise RecsysError(f"'{uri}' is not models:/NAME/VERSION or models:/NAME@ALIAS")
    if match["alias"] is None:
        return uri
    import mlflow
    from mlflow import MlflowClient

    try:
        version = MlflowClient().get_model_version_by_alias(match["name"], match["alias"]).version
    except Exception as err:  # MLflow raises several types for unknown names/aliases/stores
        raise RecsysError(
            f"cannot resolve '{uri}' in MLflow at {mlflow.get_tracking_uri()} (set "
            f"MLFLOW_TRACKING_URI to the store it is registered in): {err}"
        ) from err
    return f"models:/{match['name']}/{version}"


def bundle_digest(bundle_dir: str | Path) -> str:
    """sha256 over the bundle's files except recsys.json (provenance, which differs between
    copies of one model), so the same model digests alike from any source."""
    digest = hashlib.sha256()
    for file in sorted(Path(bundle_dir).rglob("*")):
        if file.is_file() and file.name != INFO_FILE:
            digest.update(str(file.relative_to(bundle_dir)).encode() + b"\0")
            with file.open("rb") as fh:
                while block := fh.read(1 << 22):
                    digest.update(block)
    return digest.hexdigest()


def _bentoml_model(tag: str):  # -> bentoml.Model
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        return bentoml.models.get(tag)
    except (BentoMLException, ValueError) as err:
        raise RecsysError(
            f"model '{tag}' is not a checkpoint file, a bundle directory, models:/NAME/VERSION "
            f"or models:/NAME@ALIAS, nor a model in the BentoML store "
            f"({_bentoml_home()}; `bentoml models list` shows what it holds): {err}"
        ) from err


def _bentoml_home() -> str:
    from bentoml._internal.configuration.containers import BentoMLContainer

    try:
        return str(BentoMLContainer.model_store_dir.get())
    except Exception:  # a private API: fall back to naming the variable
        return "$BENTOML_HOME/models"
