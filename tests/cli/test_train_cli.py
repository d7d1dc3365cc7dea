"""recsys-train and recsys-eval through the real console scripts: last line, run directory,
DDP on CPU, a multirun over the DDP process count, SIGKILL and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import polars as pl
import pytest
import torch

from tests.conftest import BIN

pytestmark = pytest.mark.slow
QUIET = ["logger=none", "callbacks=checkpoint_only", "trainer.enable_progress_bar=false"]
METRIC_KEYS = {"test/recall@10", "test/ndcg@10", "test/recall@20", "test/ndcg@20", "n_users"}


def cli(command, cwd, *args, timeout=600):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [BIN / command, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def evaluate(cwd, run, data, out, *extra):
    """recsys-eval of a run's best checkpoint; returns (process, metrics.json or None)."""
    res = cli(
        "recsys-eval",
        cwd,
        f"ckpt_path={run}/checkpoints/best.ckpt",
        f"data.processed_dir={data}",
        f"eval.output_dir={out}",
        *extra,
    )
    path = out / "metrics.json"
    return res, json.loads(path.read_text()) if path.is_file() else None


def last_line(text):
    return text.strip().splitlines()[-1]


def check_quiet_output(output: str, epochs: int) -> None:
    """What `make demo` prints: no line twice (Lightning's handler beside Hydra's), no product
    tips, and with the progress bar off a line per epoch with loss, val NDCG@10, triplets/s,
    then one per refit epoch."""
    messages = [line.split("] - ", 1)[-1] for line in output.splitlines() if line.strip()]
    assert "GPU available: False, used: False" in messages
    assert not [m for m in messages if m.startswith("INFO: ")]  # Lightning's own handler
    assert "litlogger" not in output and "Tip:" not in output
    fit = [m for m in messages if m.startswith("epoch ")]
    refit = [m for m in messages if m.startswith("refit epoch ")]
    assert [m.split(",")[0] for m in fit] == [f"epoch {e}/{epochs}" for e in range(1, epochs + 1)]
    assert refit and refit[-1].startswith(f"refit epoch {len(refit)}/{len(refit)},")
    assert all("loss " in m and "triplets/s " in m for m in fit + refit)
    assert all("val/ndcg@10 " in m and "best " in m for m in fit)


def test_train_then_eval(small_processed, in_tmp):
    run = in_tmp / "run"
    res = cli(
        "recsys-train",
        in_tmp,
        f"data.processed_dir={small_processed}",
        "model=mf",
        "trainer.max_epochs=3",
        f"hydra.run.dir={run}",
        *QUIET,
    )
    assert res.returncode == 0, res.stderr
    check_quiet_output(res.stdout + res.stderr, epochs=3)
    metrics = json.loads((run / "metrics.json").read_text())
    assert float(last_line(res.stdout)) == pytest.approx(metrics["val/ndcg@10"], abs=1e-6)
    assert METRIC_KEYS | {"train/samples_per_sec"} <= set(metrics)
    assert (run / ".hydra" / "config.yaml").is_file()

    out = in_tmp / "eval"
    res, evaluated = evaluate(in_tmp, run, small_processed, out, "eval.k=[5,10,20]")
    assert res.returncode == 0, res.stderr
    assert evaluated["test/ndcg@10"] == pytest.approx(metrics["test/ndcg@10"], abs=1e-6)
    assert "test/ndcg@5" in evaluated
    topk = pl.read_parquet(out / "topk.parquet")
    assert topk.schema == {
        "user_idx": pl.Int32,
        "rank": pl.Int16,
        "item_idx": pl.Int32,
        "score": pl.Float32,
    }
    assert topk["rank"].max() == 20 and topk["user_idx"].n_unique() == evaluated["n_users"]
    if not torch.cuda.is_available():  # a GPU that is not there: one line, nothing written
        res, written = evaluate(in_tmp, run, small_processed, in_tmp / "gpu", "eval.device=cuda")
        assert res.returncode == 2 and "eval.device" in res.stderr and written is None
        assert "Traceback" not in res.stderr


def test_eval_user_errors_exit_2(small_processed, in_tmp):
    junk = in_tmp / "junk.ckpt"
    junk.write_text("not a checkpoint")
    res = cli(
        "recsys-eval",
        in_tmp,
        f"ckpt_path={junk}",
        f"data.processed_dir={small_processed}",
        f"eval.output_dir={in_tmp / 'o'}",
    )
    assert res.returncode == 2 and "junk.ckpt" in res.stderr and "Traceback" not in res.stderr
    res = cli("recsys-train", in_tmp, *QUIET)
    assert res.returncode == 2 and "data.processed_dir" in res.stderr


def test_ddp_cpu_matches_single_process_eval(small_processed, in_tmp):
    run = in_tmp / "ddp"
    res = cli(
        "recsys-train",
        in_tmp,
        f"data.processed_dir={small_processed}",
        "model=mf",
        "trainer=ddp_cpu",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run}",
        *QUIET,
    )
    assert res.returncode == 0, res.stderr
    assert (run / "train_ddp_process_1.log").is_file()  # rank 1 ran, in this job's directory
    ddp = json.loads((run / "metrics.json").read_text())
    res, single = evaluate(in_tmp, run, small_processed, in_tmp / "eval")
    assert res.returncode == 0, res.stderr
    assert ddp["n_users"] == single["n_users"]  # nobody counted twice, nobody dropped
    for key in METRIC_KEYS:
        assert ddp[key] == pytest.approx(single[key], abs=1e-6), key


def test_multirun_over_ddp_process_count(small_processed, in_tmp):
    sweep = in_tmp / "sweep"
    res = cli(
        "recsys-train",
        in_tmp,
        "-m",
        f"data.processed_dir={small_processed}",
        "model=mf",
        "trainer=ddp_cpu",
        "trainer.devices=1,2",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
        *QUIET,
    )
    assert res.returncode == 0, res.stderr
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]  # children did not start sweeps of their own
    for job in jobs:
        assert set(json.loads((job / "metrics.json").read_text())) >= METRIC_KEYS
    assert (jobs[1] / "train_ddp_process_1.log").is_file()
    assert not (jobs[0] / "train_ddp_process_1.log").exists()


def test_sigkill_then_resume_matches_uninterrupted(small_processed, in_tmp):
    common = [
        f"data.processed_dir={small_processed}",
        "model=mf",
        "trainer.max_epochs=5",
        "data.batch_size=256",
        # The fit is what resumes; the refit's own resumption is test_refit.py's.
        "refit=false",
        *QUIET,
    ]
    full = in_tmp / "full"
    res = cli("recsys-train", in_tmp, *common, f"hydra.run.dir={full}")
    assert res.returncode == 0, res.stderr

    killed = in_tmp / "killed"
    last = killed / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        [BIN / "recsys-train", *common, f"hydra.run.dir={killed}"],
        cwd=in_tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if last.is_file() and _epoch(last) >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists(), "killed too late: the run had finished"
    res = cli("recsys-train", in_tmp, *common, f"ckpt_path={last}")  # resumes in place
    assert res.returncode == 0, res.stderr
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert b["test/ndcg@10"] == pytest.approx(a["test/ndcg@10"], rel=0.02)


def _epoch(path):
    try:
        return torch.load(path, weights_only=True)["epoch"]
    except Exception:  # caught mid-write
        return -1


def test_multirun_over_models_gives_finished_mlflow_runs(small_processed, in_tmp):
    import mlflow

    uri = f"sqlite:///{in_tmp / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONWARNINGS": "ignore"}
    res = subprocess.run(
        [
            BIN / "recsys-train",
            "-m",
            f"data.processed_dir={small_processed}",
            "model=mf,gmf",
            "trainer.max_epochs=1",
            "logger=mlflow",
            "callbacks=checkpoint_only",
            "trainer.enable_progress_bar=false",
            f"hydra.sweep.dir={in_tmp / 'sweep'}",
        ],
        cwd=in_tmp,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("recsys").experiment_id])
    assert sorted(r.data.tags["model"] for r in runs) == ["GMF", "MF"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert len(client.search_model_versions("name='recsys'")) == 2


def test_optuna_search_runs_trials(small_processed, in_tmp):
    res = cli(
        "recsys-train",
        in_tmp,
        "-m",
        "hparams_search=neumf_optuna",
        f"data.processed_dir={small_processed}",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={in_tmp / 'optuna'}",
        "trainer.enable_progress_bar=false",
    )
    assert res.returncode == 0, res.stderr
    best = (in_tmp / "optuna" / "optimization_results.yaml").read_text()
    assert "best_params" in best and "best_value" in best


def test_neumf_pretrained_starts_from_the_gmf_and_mlp_checkpoints(small_processed, in_tmp):
    """The NCF paper's recipe through the console script (conf/experiment/neumf_pretrained.yaml):
    NeuMF's towers start as the trained GMF's and MLP's, the head as alpha * h_gmf and
    (1 - alpha) * h_mlp. With the learning rate at 0 training leaves them as loaded, so the
    NeuMF checkpoint must hold the pretrained tensors exactly (a random init never does)."""
    from recsys.models import GMF, MLP, NeuMF
    from recsys.models.checkpoint import load_net

    for model in ("gmf", "mlp"):
        res = cli(
            "recsys-train",
            in_tmp,
            f"data.processed_dir={small_processed}",
            f"model={model}",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=4",  # any trained checkpoint will do
            "test=false",
            "refit=false",
            f"hydra.run.dir={in_tmp / model}",
            *QUIET,
        )
        assert res.returncode == 0, res.stderr
    gmf_ckpt, mlp_ckpt = (in_tmp / m / "checkpoints" / "best.ckpt" for m in ("gmf", "mlp"))
    res = cli(
        "recsys-train",
        in_tmp,
        f"data.processed_dir={small_processed}",
        "experiment=neumf_pretrained",
        f"model.net.pretrained_gmf={gmf_ckpt}",
        f"model.net.pretrained_mlp={mlp_ckpt}",
        "model.optimizer.lr=0",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=4",
        "test=false",
        "refit=false",
        f"hydra.run.dir={in_tmp / 'neumf'}",
        *QUIET,
    )
    assert res.returncode == 0, res.stderr
    gmf, _ = load_net(gmf_ckpt)
    mlp, _ = load_net(mlp_ckpt)
    neumf, _ = load_net(in_tmp / "neumf" / "checkpoints" / "best.ckpt")
    assert isinstance(gmf, GMF) and isinstance(mlp, MLP) and isinstance(neumf, NeuMF)
    assert neumf.alpha == 0.5
    assert torch.equal(neumf.gmf_user.weight, gmf.user_emb.weight)
    assert torch.equal(neumf.gmf_item.weight, gmf.item_emb.weight)
    tower, pretrained_tower = neumf.mlp.state_dict(), mlp.mlp.state_dict()
    assert tower.keys() == pretrained_tower.keys()
    for name, tensor in pretrained_tower.items():
        assert torch.equal(tower[name], tensor), name
    assert torch.equal(neumf.gmf_head, 0.5 * gmf.head.weight[0])  # halving is exact
    assert torch.equal(neumf.mlp_head, 0.5 * mlp.head.weight[0])
