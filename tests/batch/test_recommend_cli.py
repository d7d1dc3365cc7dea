"""`recsys-recommend` through the real console script: what it writes (checked against a
brute-force ranking and the service's path), models from every source, resumption after a
SIGKILL, shards, workers, and every user error (exit 2, one message, nothing touched)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from recsys.packaging.bundle import load_bundle
from recsys.packaging.locate import open_model
from recsys.packaging.recommend import recommend
from tests.conftest import BIN

pytestmark = pytest.mark.slow

SCHEMA = {"user_id": pl.String, "rank": pl.Int32, "item_id": pl.String, "score": pl.Float32}


def cli(*overrides: str, cwd: Path, tracking_uri: str | None = None, **popen):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    command = [BIN / "recsys-recommend", *overrides]
    if popen:
        return subprocess.Popen(command, cwd=cwd, env=env, **popen)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def ok(*overrides: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    result = cli(*overrides, cwd=cwd, **kwargs)
    assert result.returncode == 0, result.stderr
    return result


def parts(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("part-*.parquet"))}


def rows(directory: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(directory.glob("part-*.parquet")))


@pytest.fixture(scope="module")
def full_run(packaged, tmp_path_factory) -> Path:
    """Every user of the packaged model, k=7, small parts: the reference the others match."""
    out = tmp_path_factory.mktemp("batch") / "all"
    result = ok(f"model={packaged}", f"output_dir={out}", "k=7", "part_users=60", cwd=out.parent)
    assert result.stdout.strip().splitlines()[-1] == str(out / "manifest.json")
    return out


def test_every_user_gets_the_brute_force_top_k_of_unseen_items(full_run, packaged, trained):
    frame = rows(full_run)
    assert dict(frame.schema) == SCHEMA
    manifest = json.loads((full_run / "manifest.json").read_text())
    users = trained.ids("user")
    assert manifest["model"] == packaged and manifest["k"] == 7
    assert manifest["n_users"] == len(users) and manifest["n_rows"] == frame.height
    assert [p["file"] for p in manifest["parts"]] == sorted(parts(full_run))
    assert sum(p["rows"] for p in manifest["parts"]) == frame.height
    # One block per user, in the model's user order, ranked 1..k.
    blocks = frame.group_by("user_id", maintain_order=True).agg("rank", "item_id", "score")
    assert blocks["user_id"].to_list() == users
    assert all(r == list(range(1, len(r) + 1)) for r in blocks["rank"].to_list())
    with open_model(packaged) as located:
        bundle = load_bundle(located.bundle_dir)
    fallback = pl.read_parquet(full_run / "fallback_users.parquet")
    assert manifest["n_fallback_users"] == fallback.height
    assert set(fallback["user_id"]) == set(users) - set(bundle.user_index)
    item_ids = bundle.item_ids.tolist()
    net = bundle.net
    for user_id, items, scores in (
        blocks.select("user_id", "item_id", "score").sample(40, seed=0).iter_rows()
    ):
        if user_id not in bundle.user_index:
            assert items == item_ids_of(bundle, bundle.popular_items[:7])
            continue
        u = bundle.user_index[user_id]
        with torch.no_grad():  # the pairwise path, not the catalogue kernel under test
            all_scores = net.score(torch.full((net.n_items,), u), torch.arange(net.n_items))
        seen = bundle.seen_indices[bundle.seen_indptr[u] : bundle.seen_indptr[u + 1]]
        all_scores[seen] = -torch.inf
        top = torch.topk(all_scores, 7)
        np.testing.assert_allclose(scores, top.values.numpy(), rtol=1e-5, atol=1e-6)
        assert items == [item_ids[i] for i in top.indices.tolist()]
    # ... and the service's answer, through the one recommend path.
    sample = blocks.head(25)
    served = recommend(bundle, sample["user_id"].to_list(), 7)
    assert [r.items for r in served] == sample["item_id"].to_list()


def item_ids_of(bundle, index: torch.Tensor) -> list[str]:
    return bundle.item_ids[index.numpy()].tolist()


def test_a_user_file_with_unknown_ids_gets_popular_items_flagged(full_run, packaged, tmp_path):
    cold = pl.read_parquet(full_run / "fallback_users.parquet")["user_id"]
    users = rows(full_run)["user_id"].unique(maintain_order=True)
    known = users.filter(~users.is_in(cold.implode())).to_list()[:5]
    ids = [known[3], "nobody-1", known[0], known[3], "nobody-2"]
    (tmp_path / "u.txt").write_text("\n".join(ids) + "\n\n")
    pl.DataFrame({"user_id": ids, "segment": range(5)}).write_csv(tmp_path / "u.csv")
    pl.DataFrame({"id": ids}).write_parquet(tmp_path / "u.parquet")
    from recsys.batch.users import read_user_ids

    # The three formats read alike (in-process); the command runs on one of them.
    read = [read_user_ids(tmp_path / name) for name in ("u.txt", "u.csv", "u.parquet")]
    assert read[0].to_list() == read[1].to_list() == read[2].to_list()
    out = tmp_path / "out"
    ok(f"model={packaged}", f"output_dir={out}", f"users={tmp_path / 'u.csv'}", "k=7", cwd=tmp_path)
    frame = rows(out)
    assert frame["user_id"].unique(maintain_order=True).to_list() == [
        known[3],
        "nobody-1",
        known[0],
        "nobody-2",
    ]  # file order, the duplicate dropped
    reference = rows(full_run)
    for user in (known[3], known[0]):  # the block of the run over all users
        got, want = (f.filter(pl.col("user_id") == user) for f in (frame, reference))
        assert got["item_id"].to_list() == want["item_id"].to_list()
        # Scored in another batch: the float sums may associate differently.
        np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5)
    fallback = pl.read_parquet(out / "fallback_users.parquet")
    assert fallback.rows() == [("nobody-1", "unknown"), ("nobody-2", "unknown")]
    popular = frame.filter(pl.col("user_id") == "nobody-1")
    assert popular.height == 7 and popular["score"].is_sorted(descending=True)
    assert (
        popular["item_id"].to_list()
        == frame.filter(pl.col("user_id") == "nobody-2")["item_id"].to_list()
    )


def test_registered_versions_and_aliases_give_the_same_parts(full_run, trained, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=trained.tracking_uri, registry_uri=trained.tracking_uri)
    client.set_registered_model_alias("recsys", "champion", "1")
    for model in ("models:/recsys@champion",):  # resolved to models:/recsys/1
        out = tmp_path / "champion"
        ok(
            f"model={model}",
            f"output_dir={out}",
            "k=7",
            "part_users=60",
            cwd=trained.workdir,
            tracking_uri=trained.tracking_uri,
        )
        assert parts(out) == parts(full_run)
        assert json.loads((out / "manifest.json").read_text())["model"] == "models:/recsys/1"
    out = tmp_path / "ckpt"
    ok(f"model={trained.ckpt}", f"output_dir={out}", "k=7", "part_users=60", cwd=tmp_path)
    assert parts(out) == parts(full_run)


def test_a_run_killed_with_sigkill_resumes_to_the_same_files(full_run, packaged, tmp_path):
    out = tmp_path / "killed"
    args = (f"model={packaged}", f"output_dir={out}", "k=7", "part_users=60")
    process = cli(*args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("part-*.parquet")) and process.poll() is None:
        assert time.monotonic() < deadline, "no part written"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = parts(out)
    assert 0 < len(written) < len(parts(full_run)), "kill the run between its first and last part"
    assert not (out / "manifest.json").exists()
    result = ok(*args, cwd=tmp_path)
    assert f"{len(written)} already written" in result.stderr
    assert parts(out) == parts(full_run)
    assert not list(out.glob(".*.tmp"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["timing"]["parts_resumed"] == len(written)


def test_shards_together_are_the_single_run(full_run, packaged, tmp_path):
    args = (f"model={packaged}", "k=7", "part_users=60", f"output_dir={tmp_path / 'shared'}")
    ok(*args, "shard=1/2", cwd=tmp_path)
    assert not (tmp_path / "shared" / "manifest.json").exists()  # shard 0's parts missing
    ok(*args, "shard=0/2", cwd=tmp_path)
    shard_parts = [
        {p["file"] for p in json.loads((tmp_path / "shared" / name).read_text())["parts"]}
        for name in ("manifest-shard-0-of-2.json", "manifest-shard-1-of-2.json")
    ]
    assert shard_parts[0] and shard_parts[1] and not shard_parts[0] & shard_parts[1]
    assert shard_parts[0] | shard_parts[1] == set(parts(full_run))
    assert parts(tmp_path / "shared") == parts(full_run)  # byte for byte
    merged = json.loads((tmp_path / "shared" / "manifest.json").read_text())
    single = json.loads((full_run / "manifest.json").read_text())
    for key in ("n_users", "n_rows", "parts", "model_sha256", "input_sha256"):
        assert merged[key] == single[key]
    assert len(merged["timing"]["shards"]) == 2


def test_workers_write_the_parts_of_one_process_with_their_thread_count(packaged, tmp_path):
    args = (f"model={packaged}", "k=7", "part_users=60", "threads=1")
    ok(*args, f"output_dir={tmp_path / 'one'}", cwd=tmp_path)
    ok(*args, f"output_dir={tmp_path / 'two'}", "workers=2", cwd=tmp_path)
    assert parts(tmp_path / "two") == parts(tmp_path / "one")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("model=recsys:nosuchversion",), "is not a checkpoint file, a bundle directory"),
        (("model=models:/recsys@nosuchalias",), "cannot resolve 'models:/recsys@nosuchalias'"),
        (("retrieval=fast",), "retrieval"),
    ],
)
def test_bad_arguments_give_one_message_and_write_nothing(
    overrides, message, packaged, trained, tmp_path
):
    out = tmp_path / "out"
    result = cli(
        f"model={packaged}",
        f"output_dir={out}",
        *overrides,
        cwd=tmp_path,
        tracking_uri=trained.tracking_uri,
    )
    assert result.returncode != 0  # 2 for recsys' checks, 1 for Hydra's type check
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"users": "missing.csv"}, "no such users file"),
        ({"users": "bad.parquet"}, "cannot read the users file"),
        ({"users": "two.csv"}, "no 'user_id' column"),
        ({"users": "empty.txt"}, "holds no user ids"),
        ({"users": "users.json"}, "users= must be 'all' or a"),
        ({"shard": "2/2"}, "is not I/N with 0 <= I < N"),
        ({"shard": "1"}, "is not I/N with 0 <= I < N"),
        ({"k": 0}, "ask for at least one item"),
        ({"workers": 0}, "workers=0: must be at least 1"),
        ({"threads": 0}, "threads=0: must be at least 1"),
        ({"retrieval": "ann"}, "retrieval=ann"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(
    settings, message, packaged, tmp_path, monkeypatch
):
    """The same checks in-process (the CLI's exit 2 and message are shown above)."""
    from recsys.batch.options import ScoringOptions
    from recsys.batch.run import recommend_all
    from recsys.errors import RecsysError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "two.csv").write_text("a,b\n1,2\n")
    (tmp_path / "bad.parquet").write_text("not parquet")
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "users.json").write_text("[]")
    with pytest.raises(RecsysError, match=re.escape(message)):
        recommend_all(packaged, tmp_path / "out", ScoringOptions(**settings))
    assert not (tmp_path / "out").exists()


def test_an_output_dir_of_another_job_or_other_files_is_left_alone(full_run, packaged, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(full_run, other)
    before = {p.name: p.read_bytes() for p in other.iterdir()}
    result = cli(f"model={packaged}", f"output_dir={other}", "k=5", "part_users=60", cwd=tmp_path)
    assert result.returncode == 2
    assert "holds the parts of another job (k: 7 there, 5 now)" in result.stderr
    assert {p.name: p.read_bytes() for p in other.iterdir()} == before
    from recsys.batch.options import ScoringOptions
    from recsys.batch.run import recommend_all
    from recsys.errors import RecsysError

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(RecsysError, match="files that no recsys-recommend job wrote"):
        recommend_all(packaged, foreign, ScoringOptions())
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_two_stage_retrieval_through_the_packaged_index(full_run, trained, tmp_path):
    from recsys.packaging.options import AnnOptions, IndexKind
    from recsys.packaging.sources import from_checkpoint
    from recsys.packaging.store import save_parts

    tag = save_parts(
        from_checkpoint(str(trained.ckpt)), "recsys-indexed", AnnOptions(IndexKind.hnsw)
    )
    args = (f"model={tag}", "k=7", "part_users=60")
    ok(*args, f"output_dir={tmp_path / 'ann'}", cwd=tmp_path)  # auto: the index
    ok(*args, f"output_dir={tmp_path / 'exact'}", "retrieval=exact", cwd=tmp_path)
    assert json.loads((tmp_path / "ann" / "manifest.json").read_text())["retrieval"] == "ann"
    assert parts(tmp_path / "exact") == parts(full_run)
    two_stage, exact = rows(tmp_path / "ann"), rows(full_run)
    assert two_stage.height == exact.height
    overlap = two_stage.join(exact, on=["user_id", "item_id"], how="semi").height
    assert overlap / exact.height >= 0.95
