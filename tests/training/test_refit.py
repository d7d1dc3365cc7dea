"""The refit on train + val after selection: what it trains on, what it writes, when it runs."""

from __future__ import annotations

import json

import pytest
import torch

from recsys.data.datamodule import RecsysDataModule
from recsys.errors import RecsysError
from recsys.evaluation.report import evaluate_checkpoint
from recsys.models.checkpoint import load_net
from recsys.training.run import train
from tests.training.compose import train_config

METRIC_KEYS = ("test/recall@10", "test/ndcg@10", "test/recall@20", "test/ndcg@20", "n_users")


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_refit_trains_on_train_and_val_and_tests_against_the_same_masks(small_processed):
    """fit_on_val: every train and val interaction is a positive, each once; the test users,
    their relevant items and their seen items (train + val) are those of a plain run."""
    plain = RecsysDataModule(str(small_processed))
    both = RecsysDataModule(str(small_processed), fit_on_val=True)
    for dm in (plain, both):
        dm.setup("fit")
        dm.setup("test")
    data = plain.load()
    pairs = sorted(zip(*(t.tolist() for t in both.train_pairs), strict=True))
    want = sorted(
        zip(
            torch.cat([data.train.users, data.val.users]).tolist(),
            torch.cat([data.train.items, data.val.items]).tolist(),
            strict=True,
        )
    )
    assert pairs == want
    assert both.val_set is None  # nothing to validate on: val is training data now
    for field in ("users", "seen_indptr", "seen_indices", "rel_indptr", "rel_indices"):
        assert torch.equal(getattr(plain.test_set, field), getattr(both.test_set, field)), field


def test_default_run_refits_the_selected_epochs_and_tests_the_refit(small_processed, tmp_path):
    metrics, objects = train(train_config(small_processed, tmp_path, "model=mf"))
    ckpts = tmp_path / "checkpoints"
    selected, best = _state(ckpts / "selected.ckpt"), _state(ckpts / "best.ckpt")
    assert "refit" not in selected["recsys"]  # the val-selected checkpoint, kept as it was
    epochs = selected["epoch"] + 1
    assert best["recsys"]["refit"]["epochs"] == epochs == metrics["refit/epochs"]
    assert best["recsys"]["refit"]["selected"] == str((ckpts / "selected.ckpt").resolve())
    # Retrained from the same initialisation on more data: different weights.
    key = "net.item_emb.weight"
    assert not torch.equal(selected["state_dict"][key], best["state_dict"][key])
    # metrics.json's test figures are the refit's, as recsys-eval measures best.ckpt.
    written = json.loads((tmp_path / "metrics.json").read_text())
    again = evaluate_checkpoint(str(ckpts / "best.ckpt"), str(small_processed), str(tmp_path / "e"))
    for name in METRIC_KEYS:
        assert again[name] == pytest.approx(written[name], abs=1e-6), name
    # val figures are the selection's: the checkpoint callback's best score.
    score = float(objects["trainer"].checkpoint_callback.best_model_score)
    assert written["val/ndcg@10"] == pytest.approx(score, abs=1e-6)
    load_net(ckpts / "best.ckpt")  # loads like any checkpoint


def test_refit_false_tests_the_selected_checkpoint(small_processed, tmp_path):
    metrics, _ = train(train_config(small_processed, tmp_path, "model=mf", "refit=false"))
    ckpts = tmp_path / "checkpoints"
    assert not (ckpts / "selected.ckpt").exists() and "refit/epochs" not in metrics
    assert "refit" not in _state(ckpts / "best.ckpt")["recsys"]
    again = evaluate_checkpoint(str(ckpts / "best.ckpt"), str(small_processed), str(tmp_path / "e"))
    assert again["test/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"], abs=1e-6)


def test_runs_that_neither_test_nor_register_do_not_refit(small_processed, tmp_path):
    """A sweep's trials (test=false register=false) only need the selection."""
    metrics, _ = train(
        train_config(small_processed, tmp_path, "model=mf", "test=false", "register=false")
    )
    assert not (tmp_path / "checkpoints" / "selected.ckpt").exists()
    assert not any(key.startswith("test/") for key in metrics)


def test_refit_true_refits_a_given_checkpoint_into_its_own_run(small_processed, tmp_path):
    """The budgeted search's last job: train=false refit=true ckpt_path=TRIAL's best."""
    trial = tmp_path / "trial"
    train(train_config(small_processed, trial, "model=mf", "test=false", "register=false"))
    given = trial / "checkpoints" / "best.ckpt"
    before = given.read_bytes()
    final = tmp_path / "final"
    metrics, _ = train(
        train_config(
            small_processed, final, "model=mf", "train=false", "refit=true", f"ckpt_path={given}"
        )
    )
    assert given.read_bytes() == before and not (trial / "checkpoints" / "selected.ckpt").exists()
    best = _state(final / "checkpoints" / "best.ckpt")
    assert best["recsys"]["refit"]["epochs"] == _state(given)["epoch"] + 1
    assert (final / "checkpoints" / "selected.ckpt").read_bytes() == before
    assert "test/ndcg@10" in metrics


def test_a_bad_refit_value_is_a_user_error(small_processed, tmp_path):
    with pytest.raises(RecsysError, match="refit must be auto, true or false"):
        train(train_config(small_processed, tmp_path, "model=mf", "refit=sometimes"))


def test_a_resumed_run_validates_the_selection_not_its_earlier_refit(small_processed, tmp_path):
    """Resuming a finished run: its checkpoint callback may still name best.ckpt, which the
    refit replaced; val figures must come from the selection (the refit has seen val).
    Resumed at its last epoch, the run trains no more and the callback keeps best.ckpt."""
    train(train_config(small_processed, tmp_path, "model=mf", "trainer.max_epochs=2"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    again, objects = train(
        train_config(
            small_processed, tmp_path, "model=mf", "trainer.max_epochs=2", f"ckpt_path={last}"
        )
    )
    score = float(objects["trainer"].checkpoint_callback.best_model_score)
    assert again["val/ndcg@10"] == pytest.approx(score, abs=1e-6)
    assert "refit" in _state(tmp_path / "checkpoints" / "best.ckpt")["recsys"]
