"""`recsys-promote` against a real MLflow registry (SQLite): the first model becomes champion,
a weakened candidate is refused (exit 3) and a better one promoted, each decision tagged on
its version; `force`, models trained on other data, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from mlflow import MlflowClient

from recsys.config import CONFIG_DIR
from recsys.errors import RecsysError
from recsys.lifecycle.options import GateSettings
from recsys.lifecycle.promote import ALREADY, FORCED, PROMOTED, promote
from recsys.lifecycle.remap import RemappedNet
from recsys.models.mf import MF
from tests.conftest import BIN
from tests.tracking.conftest import isolated_mlflow, train_tracked


@dataclass(frozen=True)
class Registry:
    workdir: Path
    uri: str
    processed: Path


@pytest.fixture(scope="module")
def registry(tiny_processed, tmp_path_factory) -> Registry:
    """Three versions of `recsys` on the tiny data: 1 popularity, 2 an MF that never learnt
    (one epoch at lr 0: the weakened candidate), 3 an MF trained for 10 epochs."""
    workdir = tmp_path_factory.mktemp("promote")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    runs = {
        "pop": ["model=pop"],
        "weak": ["model=mf", "trainer.max_epochs=1", "model.optimizer.lr=0"],
        "strong": ["model=mf", "trainer.max_epochs=10"],
    }
    with isolated_mlflow(workdir, uri):
        for name, overrides in runs.items():
            train_tracked(workdir / name, uri, tiny_processed, *overrides)
    return Registry(workdir, uri, tiny_processed)


def cli(registry: Registry, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "MLFLOW_TRACKING_URI": registry.uri}
    return subprocess.run(
        [BIN / "recsys-promote", *overrides],
        cwd=registry.workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def version(registry: Registry, number: str):
    with isolated_mlflow(registry.workdir, registry.uri):
        return MlflowClient().get_model_version("recsys", number)


def aliases(registry: Registry) -> dict[str, str]:
    with isolated_mlflow(registry.workdir, registry.uri):
        return {k: str(v) for k, v in MlflowClient().get_registered_model("recsys").aliases.items()}


@pytest.mark.slow
def test_first_becomes_champion_weak_is_refused_better_is_promoted(registry):
    first = cli(registry, "model_uri=models:/recsys/1")
    assert first.returncode == 0, first.stderr
    assert "first model registered as champion" in first.stdout.splitlines()[-1]
    assert aliases(registry) == {"champion": "1"}
    assert version(registry, "1").tags["promotion.decision"] == "first"

    weak = cli(registry, "model_uri=models:/recsys/2")
    assert weak.returncode == 3, weak.stdout + weak.stderr
    assert weak.stdout.splitlines()[-1].startswith("decision: refused")
    assert aliases(registry) == {"champion": "1"}  # untouched
    tags = version(registry, "2").tags
    assert tags["promotion.decision"] == "refused"
    assert tags["promotion.champion"] == "models:/recsys/1"
    low, high = float(tags["promotion.ci_low"]), float(tags["promotion.ci_high"])
    difference = float(tags["promotion.difference"])
    assert low <= difference <= high < 0  # an untrained MF is worse than popularity
    assert float(tags["promotion.candidate_value"]) < float(tags["promotion.champion_value"])

    strong = cli(registry, "model_uri=models:/recsys/3")
    assert strong.returncode == 0, strong.stdout + strong.stderr
    assert "decision: promoted" in strong.stdout
    assert aliases(registry) == {"champion": "3", "previous": "1"}
    tags = version(registry, "3").tags
    assert tags["promotion.decision"] == PROMOTED
    assert float(tags["promotion.ci_low"]) > 0.0
    assert version(registry, "1").tags["promotion.superseded_by"] == "models:/recsys/3"
    # The full report of each decision is an artifact of the version's training run.
    with isolated_mlflow(registry.workdir, registry.uri):
        client, run_id = MlflowClient(), version(registry, "3").run_id
        files = client.list_artifacts(run_id, "promotion")
        report = json.loads(Path(client.download_artifacts(run_id, files[0].path)).read_text())
    assert report["decision"] == PROMOTED and report["n_users"] > 0

    with isolated_mlflow(registry.workdir, registry.uri):
        again = promote("models:/recsys/3", None, GateSettings())
        assert again.decision == ALREADY and not again.promoted
        # force=true promotes what the gate refuses, and says so.
        outcome = promote("models:/recsys/2", None, GateSettings(force=True, bootstrap=200))
    assert outcome.decision == FORCED and outcome.report["ci_high"] < 0
    assert aliases(registry) == {"champion": "2", "previous": "3"}
    assert version(registry, "2").tags["promotion.forced"] == "True"
    assert "promotion.superseded_by" not in version(registry, "2").tags

    # A champion alias that disappeared (its version deleted) is no free pass for the next.
    with isolated_mlflow(registry.workdir, registry.uri):
        MlflowClient().delete_registered_model_alias("recsys", "champion")
        with pytest.raises(RecsysError, match="has no @champion but has @previous"):
            promote("models:/recsys/1", None, GateSettings())
        MlflowClient().set_registered_model_alias("recsys", "champion", "2")


@pytest.mark.slow
def test_a_champion_trained_on_other_data_needs_a_common_split(registry, tmp_path):
    from rich.console import Console

    from recsys.data.options import PrepareOptions
    from recsys.data.prepare import prepare_dataset

    other = tmp_path / "other"  # the same reviews, a stricter k-core: other ids
    reviews = registry.processed.parent / "reviews.jsonl"
    prepare_dataset(reviews, other, PrepareOptions(min_interactions=8), Console(quiet=True))
    with isolated_mlflow(registry.workdir, registry.uri):
        if "champion" not in aliases(registry):  # run alone
            promote("models:/recsys/3", None, GateSettings(bootstrap=200))
        train_tracked(tmp_path / "run", registry.uri, other, "model=pop")
        newest = MlflowClient().search_model_versions("name='recsys'")
        candidate = f"models:/recsys/{max(int(v.version) for v in newest)}"
        with pytest.raises(RecsysError, match=r"trained on other data.*data\.processed_dir"):
            promote(candidate, None, GateSettings(bootstrap=200))
        champion_before = dict(MlflowClient().get_registered_model("recsys").aliases)
        # On a common split, each model is matched to it by id.
        outcome = promote(candidate, str(registry.processed), GateSettings(bootstrap=200))
    assert outcome.report["processed_dir"] == str(registry.processed.resolve())
    assert outcome.report["n_users"] > 0 and "ci_low" in outcome.report
    if not outcome.promoted:
        assert aliases(registry) == champion_before


def test_bad_input_is_one_message(registry):
    """(The CLI turns each into one line and exit 2, as every command does.)"""
    with isolated_mlflow(registry.workdir, registry.uri):
        for uri, message in [
            ("models:/recsys@champion", "registered version, models:/NAME/N"),
            ("models:/recsys/99", "no registered model version models:/recsys/99"),
        ]:
            with pytest.raises(RecsysError, match=message):
                promote(uri, None, GateSettings())
        with pytest.raises(RecsysError, match="test/ndcg@K or test/recall@K"):
            promote("models:/recsys/1", None, GateSettings(metric="val/ndcg@10"))
        with pytest.raises(RecsysError, match="not a processed directory here"):
            promote("models:/recsys/1", "/nonexistent", GateSettings())


def test_config_defaults_compose():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("promote", overrides=["model_uri=models:/recsys/3", "margin=0.01"])
    assert cfg.metric == "test/ndcg@10" and cfg.margin == 0.01 and cfg.force is False
    assert cfg.data.processed_dir is None and cfg.confidence == 0.95


def test_remapped_net_scores_in_the_target_id_space():
    """Brute force: every (user, item) of the target scores as the net's mapped pair; unknown
    users get popularity, unknown items -inf."""
    torch.manual_seed(0)
    net = MF(n_users=6, n_items=5, embedding_dim=4).eval()
    popularity = torch.tensor([3.0, 9.0, 1.0, 0.0, 4.0])
    user_map = torch.tensor([2, -1, 0, 5])  # target users -> net users
    item_map = torch.tensor([4, 1, -1, 0, 3, 2])  # target items -> net items
    remapped = RemappedNet(net, popularity, user_map, item_map)
    users = torch.arange(4)
    with torch.no_grad():
        got = remapped.score_items(users)
        partial = remapped.score_items(users, 2, 5)
        full = net.score_items(torch.arange(6))
    for u, inner_u in enumerate(user_map.tolist()):
        for i, inner_i in enumerate(item_map.tolist()):
            if inner_i < 0:
                expected = -torch.inf
            elif inner_u < 0:
                expected = popularity[inner_i]
            else:
                expected = full[inner_u, inner_i]
            assert got[u, i] == pytest.approx(float(expected))
    assert torch.equal(partial, got[:, 2:5])


def test_judged_test_set_masks_test_interactions_a_model_trained_on(tiny_processed):
    from recsys.data.processed import load_processed
    from recsys.lifecycle.judged import judged_test_set, trained_until
    from recsys.sparse import csr_rows

    data = load_processed(tiny_processed)
    test_start = trained_until(str(tiny_processed))
    assert test_start == data.metadata["split"]["test_start"]
    same, report = judged_test_set(data, {"a": test_start, "b": None})
    assert report["test_rows_masked"] == 0 and report["unchecked"] == ["b"]
    assert same.rel_indices.numel() == len(data.test)

    ts = torch.sort(data.test.timestamps).values
    cutoff = int(ts[len(ts) // 2])  # a model trained into the middle of the test period
    judged, report = judged_test_set(data, {"a": test_start, "old": cutoff})
    late = data.test.timestamps >= cutoff
    assert report["test_rows_masked"] == int((~late).sum()) > 0
    expected = {
        (u, i)
        for u, i, keep in zip(
            data.test.users.tolist(), data.test.items.tolist(), late.tolist(), strict=True
        )
        if keep
    }
    rows, items = csr_rows(judged.rel_indptr, judged.rel_indices, torch.arange(data.n_users))
    assert set(zip(rows.tolist(), items.tolist(), strict=True)) == expected
    masked = {
        (u, i)
        for u, i, keep in zip(
            data.test.users.tolist(), data.test.items.tolist(), late.tolist(), strict=True
        )
        if not keep
    }
    rows, items = csr_rows(judged.seen_indptr, judged.seen_indices, torch.arange(data.n_users))
    assert masked <= set(zip(rows.tolist(), items.tolist(), strict=True))

    with pytest.raises(RecsysError, match="after the whole test period"):
        judged_test_set(data, {"models:/recsys/9": int(ts[-1]) + 1})
