"""`recsys-package` through the real console script: from a checkpoint, from an MLflow model
version, and every user error (exit 2, one message, the model store untouched)."""

from __future__ import annotations

import os
import subprocess

import bentoml
import pytest

from recsys.packaging.bundle import load_bundle
from recsys.packaging.recommend import queries, rank
from tests.conftest import BIN

pytestmark = pytest.mark.slow


def package(*overrides: str, cwd, tracking_uri: str | None = None):
    env = {**os.environ}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return subprocess.run(
        [BIN / "recsys-package", *overrides],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def recsys_tags() -> set[str]:
    return {str(model.tag) for model in bentoml.models.list("recsys")}


def test_package_a_checkpoint_prints_the_tag_and_records_provenance(trained, tmp_path):
    result = package(f"ckpt_path={trained.ckpt}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    tag = result.stdout.strip().splitlines()[-1]
    model = bentoml.models.get(tag)
    assert tag.startswith("recsys:") and str(model.tag) == tag
    info = model.info
    assert info.labels["model"] == "NeuMF" and info.labels["source"] == "checkpoint"
    assert len(info.labels["input_sha256"]) == 64 and info.labels["mlflow_run_id"]
    assert 0 <= info.metadata["test/ndcg@10"] <= 1
    label = float(info.labels["test/ndcg@10"])
    assert label == pytest.approx(info.metadata["test/ndcg@10"], abs=1e-6)
    bundle = load_bundle(model.path)
    assert bundle.info["metrics"]["test/ndcg@10"] == info.metadata["test/ndcg@10"]
    files = sorted(os.listdir(model.path))
    # Everything serving needs and nothing else (no optimizer state, no Lightning pickles).
    assert files == [
        "item_side.pt",
        "items.parquet",
        "model.yaml",
        "popular.pt",
        "recsys.json",
        "seen.pt",
        "users.parquet",
        "weights.pt",
    ]


def test_package_a_registered_mlflow_version_answers_like_the_checkpoint(trained, tmp_path):
    from_ckpt = package(f"ckpt_path={trained.ckpt}", cwd=tmp_path)
    from_mlflow = package(
        "model_uri=models:/recsys/1", cwd=tmp_path, tracking_uri=trained.tracking_uri
    )
    assert from_mlflow.returncode == 0, from_mlflow.stderr
    tags = [r.stdout.strip().splitlines()[-1] for r in (from_ckpt, from_mlflow)]
    a, b = (load_bundle(bentoml.models.get(tag).path) for tag in tags)
    model = bentoml.models.get(tags[1])
    assert model.info.labels["source"] == "mlflow"
    assert model.info.labels["mlflow_run_id"] == a.info["mlflow_run_id"]
    assert model.info.labels["input_sha256"] == a.info["input_sha256"]
    assert b.info["metrics"] == a.info["metrics"]
    users = [*list(a.user_index)[:20], "someone-new"]
    for x, y in zip(
        rank(a, queries(a, users, 10, True)), rank(b, queries(b, users, 10, True)), strict=True
    ):
        assert x.items == y.items and x.scores == pytest.approx(y.scores, abs=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ((), "pass exactly one of ckpt_path=FILE"),
        (("ckpt_path=a.ckpt", "model_uri=models:/recsys/1"), "pass exactly one of"),
        (("ckpt_path=missing.ckpt",), "does not exist"),
        (("model_uri=runs:/abc/model",), "is not models:/NAME/VERSION or models:/NAME@ALIAS"),
        (("model_uri=models:/recsys/999",), "cannot fetch 'models:/recsys/999'"),
    ],
    ids=["no-source", "two-sources", "missing-checkpoint", "not-a-models-uri", "no-version"],
)
def test_user_errors_exit_2_and_leave_the_store_alone(trained, tmp_path, overrides, message):
    before = recsys_tags()
    result = package(*overrides, cwd=tmp_path, tracking_uri=trained.tracking_uri)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert recsys_tags() == before


def test_a_checkpoint_with_other_data_is_refused(trained, small_processed, tmp_path):
    """Id maps of another dataset would silently recommend the wrong items."""
    before = recsys_tags()
    result = package(
        f"ckpt_path={trained.ckpt}", f"data.processed_dir={small_processed}", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "the checkpoint was trained on" in result.stderr
    assert "Traceback" not in result.stderr
    assert recsys_tags() == before


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    bogus = tmp_path / "model.ckpt"
    bogus.write_bytes(b"not a torch file")
    result = package(f"ckpt_path={bogus}", cwd=tmp_path)
    assert result.returncode == 2
    assert "is not a readable torch checkpoint" in result.stderr


def test_metrics_describe_only_the_checkpoint_they_tested(trained, tmp_path):
    """The run's metrics.json tests best.ckpt: last.ckpt gets none rather than borrowed ones."""
    result = package(f"ckpt_path={trained.ckpt.parent / 'last.ckpt'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    model = bentoml.models.get(result.stdout.strip().splitlines()[-1])
    assert not [key for key in model.info.metadata if key.startswith("test/")]
