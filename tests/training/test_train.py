"""recsys.training.run.train through Hydra compose: every model trains, checkpoints reload safely,
the test metrics match an independent recsys-eval of the same checkpoint, resume works."""

from __future__ import annotations

import json

import pytest
import torch

from recsys.evaluation.report import evaluate_checkpoint
from recsys.models.checkpoint import load_net
from recsys.training.run import train
from tests.training.compose import train_config

MODELS = ["gmf", "mlp", "neumf", "mf", "pop", "ease", "ials"]
METRIC_KEYS = {"test/recall@10", "test/ndcg@10", "test/recall@20", "test/ndcg@20", "n_users"}


@pytest.mark.parametrize("model", MODELS)
def test_fast_dev_run(model, small_processed, tmp_path):
    cfg = train_config(small_processed, tmp_path, f"model={model}", "debug=fast_dev_run")
    metrics, _ = train(cfg)
    assert set(metrics) >= METRIC_KEYS


@pytest.mark.parametrize("model", MODELS)
def test_train_writes_checkpoints_and_metrics(model, small_processed, tmp_path):
    cfg = train_config(small_processed, tmp_path, f"model={model}", "data.batch_size=256")
    metrics, objects = train(cfg)
    ckpts = tmp_path / "checkpoints"
    assert (ckpts / "best.ckpt").is_file() and (ckpts / "last.ckpt").is_file()
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == pytest.approx(metrics)
    assert METRIC_KEYS | {"val/ndcg@10", "val/recall@10", "train/samples_per_sec"} <= set(written)
    assert 0 < written["test/ndcg@10"] <= 1 and written["train/samples_per_sec"] > 0
    # The checkpoint loads without unpickling code, and recsys-eval reproduces the test metrics.
    torch.load(ckpts / "best.ckpt", weights_only=True)
    _, meta = load_net(ckpts / "best.ckpt")
    assert meta["data"]["input_sha256"] == objects["datamodule"].metadata["input_sha256"]
    again = evaluate_checkpoint(str(ckpts / "best.ckpt"), str(small_processed), str(tmp_path / "e"))
    for key in METRIC_KEYS:
        assert again[key] == pytest.approx(written[key], abs=1e-6), key


def test_learns_more_than_popularity(small_processed, tmp_path):
    pop, _ = train(train_config(small_processed, tmp_path / "pop", "model=pop"))
    mf, _ = train(
        train_config(small_processed, tmp_path / "mf", "model=mf", "trainer.max_epochs=8")
    )
    assert mf["val/ndcg@10"] > pop["val/ndcg@10"]


@pytest.mark.parametrize("model", ["ease", "ials"])
def test_solved_baselines_learn_more_than_popularity(model, small_processed, tmp_path):
    """EASE in one closed-form epoch, iALS one sweep per epoch, each validated like a
    gradient epoch; neither takes an optimizer step."""
    pop, _ = train(train_config(small_processed, tmp_path / "pop", "model=pop"))
    metrics, objects = train(
        train_config(small_processed, tmp_path / model, f"model={model}", "trainer.max_epochs=4")
    )
    assert metrics["val/ndcg@10"] > pop["val/ndcg@10"]
    trainer = objects["trainer"]
    assert trainer.current_epoch == (1 if model == "ease" else 4)
    assert not any(p.requires_grad for p in objects["module"].net.parameters())


def test_ease_refuses_a_catalogue_beyond_memory(small_processed, tmp_path, monkeypatch):
    from recsys.errors import RecsysError
    from recsys.models import ease

    monkeypatch.setattr(ease, "available_memory", lambda device: 1000)
    with pytest.raises(RecsysError, match=r"EASE needs about .*model=ials"):
        train(train_config(small_processed, tmp_path, "model=ease"))


def test_softmax_loss_trains_through_the_config(small_processed, tmp_path):
    """`model.loss=softmax` reaches the module and learns more than popularity."""
    pop, _ = train(train_config(small_processed, tmp_path / "pop", "model=pop"))
    cfg = train_config(
        small_processed, tmp_path / "mf", "model=mf", "model.loss=softmax", "trainer.max_epochs=8"
    )
    mf, objects = train(cfg)
    assert objects["module"].loss_fn.__name__ == "softmax_loss"
    assert mf["val/ndcg@10"] > pop["val/ndcg@10"]


def test_popularity_negatives_train_through_the_config(small_processed, tmp_path):
    """`data.negative_popularity_exponent` reaches the sampler, the module gets its log-Q
    table, and the model still learns more than popularity; a negative exponent is refused."""
    from recsys.errors import RecsysError

    pop, _ = train(train_config(small_processed, tmp_path / "pop", "model=pop"))
    cfg = train_config(
        small_processed, tmp_path / "mf", "model=mf", "data.negative_popularity_exponent=0.75",
        "trainer.max_epochs=8",
    )  # fmt: skip
    mf, objects = train(cfg)
    log_q = objects["module"].negative_log_q
    assert log_q is not None and log_q.shape == (objects["datamodule"].n_items,)
    assert float(log_q.std()) > 0  # really popularity-shaped, not uniform
    assert mf["val/ndcg@10"] > pop["val/ndcg@10"]
    with pytest.raises(RecsysError, match="negative_popularity_exponent"):
        train(
            train_config(small_processed, tmp_path / "bad", "data.negative_popularity_exponent=-1")
        )


def test_best_epoch_is_selected(small_processed, tmp_path):
    cfg = train_config(small_processed, tmp_path, "model=mf", "trainer.max_epochs=3")
    metrics, objects = train(cfg)
    callback = objects["trainer"].checkpoint_callback
    assert metrics["val/ndcg@10"] == pytest.approx(float(callback.best_model_score), abs=1e-6)


def test_resume_continues_from_last_checkpoint(small_processed, tmp_path):
    full, _ = train(
        train_config(small_processed, tmp_path / "full", "model=mf", "trainer.max_epochs=4")
    )
    first = tmp_path / "part"
    train(train_config(small_processed, first, "model=mf", "trainer.max_epochs=2", "test=false"))
    last = first / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    resumed, objects = train(
        train_config(
            small_processed, first, "model=mf", "trainer.max_epochs=4", f"ckpt_path={last}"
        )
    )
    assert objects["trainer"].current_epoch == 4
    # Same seed, same sampled triplets per epoch: the resumed run ends where the full one does.
    assert resumed["val/ndcg@10"] == pytest.approx(full["val/ndcg@10"], rel=0.02)
    assert resumed["test/ndcg@10"] == pytest.approx(full["test/ndcg@10"], rel=0.02)


def test_bad_processed_dir_is_a_user_error(tmp_path):
    from recsys.errors import RecsysError

    cfg = train_config(tmp_path / "missing", tmp_path)
    with pytest.raises(RecsysError, match="recsys-preprocess"):
        train(cfg)


@pytest.mark.parametrize("n", [1, 1000, 64 * 1024, 64 * 1500, 3_000_000, 10**9])
def test_auto_batch_size_is_the_largest_power_of_two_that_keeps_enough_steps(n):
    from recsys.data.datamodule import AUTO_MAX, AUTO_MIN, AUTO_STEPS_PER_EPOCH, auto_batch_size

    batch = auto_batch_size(n)
    assert batch & (batch - 1) == 0 and AUTO_MIN <= batch <= AUTO_MAX
    assert batch == AUTO_MIN or n // batch >= AUTO_STEPS_PER_EPOCH
    assert batch == AUTO_MAX or n // (2 * batch) < AUTO_STEPS_PER_EPOCH


def test_auto_batch_and_scaled_learning_rate(small_processed, tmp_path):
    """`data.batch_size=auto` resolves from the train split and negatives per interaction, and
    the optimizer runs at lr x sqrt(batch / 1024) (the configured lr is the rate at 1024)."""
    from recsys.data.datamodule import auto_batch_size

    cfg = train_config(
        small_processed, tmp_path, "model=mf", "trainer.max_epochs=1", "test=false",
        "data.batch_size=auto", "data.num_negatives=8", "model.lr_scaling=sqrt",
    )  # fmt: skip
    _, objects = train(cfg)
    datamodule, trainer = objects["datamodule"], objects["trainer"]
    batch = auto_batch_size(len(datamodule.load().train) * 8)
    assert datamodule.train_batch_size == batch > 1024
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(cfg.model.optimizer.lr * (batch / 1024) ** 0.5)
    assert trainer.num_training_batches == -(-len(datamodule.load().train) * 8 // batch)


def test_lr_scale_follows_its_rule_up_to_the_max_batch():
    from recsys.training.module import lr_scale

    assert lr_scale(4096, "sqrt", 1024) == 2.0
    assert lr_scale(4096, "linear", 1024) == 4.0
    assert lr_scale(512, "sqrt", 1024, 8192) == pytest.approx(0.5**0.5)
    assert lr_scale(65536, "sqrt", 1024, 8192) == lr_scale(8192, "sqrt", 1024) == 8**0.5
    assert lr_scale(65536, "none", 1024, 8192) == 1.0


def test_bad_batch_size_is_a_user_error(small_processed, tmp_path):
    from recsys.errors import RecsysError

    for value in ("big", "0"):
        cfg = train_config(small_processed, tmp_path, f"data.batch_size={value}")
        with pytest.raises(RecsysError, match=r"data\.batch_size must be 'auto' or an integer"):
            train(cfg)


def test_loss_and_fit_time_are_logged_per_epoch_not_per_step(small_processed, tmp_path):
    """A per-step self.log copies the loss to the host each step (a device sync)."""
    cfg = train_config(small_processed, tmp_path, "model=mf", "trainer.max_epochs=2", "logger=csv")
    train(cfg)
    rows = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "train/loss" in header and "time/fit_s" in header
    assert not any(name.startswith("train/loss_") for name in header)
    column = header.index("time/fit_s")
    times = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    assert len(times) == 2 and 0 < times[0] < times[1]


@pytest.mark.slow
def test_compiled_step_trains_like_the_eager_one(small_processed, tmp_path):
    """`model.compile_step=true` runs the same BPR step through torch.compile (MF: no
    dropout, so both see the same computation up to float rounding)."""
    runs = {}
    for compiled in (False, True):
        cfg = train_config(
            small_processed, tmp_path / str(compiled), "model=mf", "trainer.max_epochs=1",
            "test=false", f"model.compile_step={str(compiled).lower()}",
        )  # fmt: skip
        metrics, objects = train(cfg)
        module = objects["module"]
        assert (module.step_fn() != module.loss_terms) is compiled  # really compiled, or not
        runs[compiled] = metrics["val/ndcg@10"]
    assert runs[True] == pytest.approx(runs[False], abs=2e-3)


def test_recency_weighted_positives_train_through_the_config(small_processed, tmp_path):
    cfg = train_config(small_processed, tmp_path, "model=mf", "data.recency_half_life_days=90")
    metrics, objects = train(cfg)
    weights = objects["datamodule"].train_weights
    assert weights is not None and float(weights.max()) == 1.0 and float(weights.min()) > 0
    assert 0 < metrics["test/ndcg@10"] <= 1


def test_a_bad_recency_half_life_is_a_user_error(small_processed, tmp_path):
    from recsys.errors import RecsysError

    with pytest.raises(RecsysError, match="recency_half_life_days"):
        train(train_config(small_processed, tmp_path, "data.recency_half_life_days=-3"))


def test_a_solved_checkpoint_is_tested_without_training(small_processed, tmp_path):
    """train=false ckpt_path=...: the EASE checkpoint's history loads into a net built from
    the config, and the test metrics equal the training run's."""
    trained, _ = train(train_config(small_processed, tmp_path / "fit", "model=ease"))
    best = tmp_path / "fit" / "checkpoints" / "best.ckpt"
    cfg = train_config(small_processed, tmp_path / "test", "model=ease", "train=false",
                       f"ckpt_path={best}")  # fmt: skip
    tested, _ = train(cfg)
    assert tested["test/ndcg@10"] == pytest.approx(trained["test/ndcg@10"], abs=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train=false"], "give it ckpt_path"),
        (["model=ials", "trainer=ddp_cpu"], "fitted by a solver on one device"),
    ],
)
def test_runs_that_cannot_work_are_refused_up_front(overrides, message, small_processed, tmp_path):
    from recsys.errors import RecsysError

    with pytest.raises(RecsysError, match=message):
        train(train_config(small_processed, tmp_path, *overrides))


def test_the_optimized_metric_selects_and_is_tracked_as_best(small_processed, tmp_path):
    """`optimized_metric` names what selects epochs: its `_best` series, the checkpoint's."""
    cfg = train_config(
        small_processed, tmp_path, "model=mf", "optimized_metric=val/recall@20", "refit=false"
    )
    metrics, objects = train(cfg)
    checkpoint = objects["trainer"].checkpoint_callback
    assert checkpoint.monitor == "val/recall@20"
    best = float(checkpoint.best_model_score)
    assert best == pytest.approx(metrics["val/recall@20"], abs=1e-6)
    assert objects["module"].monitor == "val/recall@20"
    assert float(objects["module"].val_best.compute()) == pytest.approx(best, abs=1e-6)


def test_an_unknown_optimized_metric_is_a_user_error(small_processed, tmp_path):
    from recsys.errors import RecsysError

    cfg = train_config(small_processed, tmp_path, "model=mf", "optimized_metric=val/loss")
    with pytest.raises(RecsysError, match="optimized_metric must be val/ndcg@K or val/recall@K"):
        train(cfg)
