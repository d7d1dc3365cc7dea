"""`evaluate_checkpoint`: metrics.json and topk.parquet per docs/REFERENCE.md, Evaluation,
checked from files."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from rich.console import Console

from recsys.data.options import PrepareOptions
from recsys.data.prepare import prepare_dataset
from recsys.data.sampling import NegativeSampler
from recsys.errors import RecsysError
from recsys.evaluation.options import SegmentSettings
from recsys.evaluation.protocols import evaluate_sampled
from recsys.evaluation.report import evaluate_checkpoint
from recsys.models import MF, RecommenderNet
from tests.conftest import BIN

N_USERS, N_ITEMS = 30, 40
METRIC_KEYS = {"test/recall@10", "test/ndcg@10", "test/recall@20", "test/ndcg@20", "n_users"}


def coverage_keys(*ks: int) -> set[str]:
    """What segments add to metrics.json: the top-K's coverage and popularity percentile."""
    return {f"test/{name}@{k}" for name in ("coverage", "avg_popularity_percentile") for k in ks}


TOPK_SCHEMA = {"user_idx": pl.Int32, "rank": pl.Int16, "item_idx": pl.Int32, "score": pl.Float32}


def write_split(path: Path, rows: list[tuple[int, int]], t0: int) -> None:
    pl.DataFrame(
        {
            "user_idx": [u for u, _ in rows],
            "item_idx": [i for _, i in rows],
            "timestamp": [t0 + n for n in range(len(rows))],
            "rating": [5.0] * len(rows),
        },
        schema={"user_idx": pl.Int32, "item_idx": pl.Int32, "timestamp": pl.Int64,
                "rating": pl.Float32},
    ).write_parquet(path)  # fmt: skip


def write_processed(root: Path, splits: dict[str, list[tuple[int, int]]], n_users, n_items):
    """A processed directory per docs/REFERENCE.md, Processed directory, written directly."""
    root.mkdir(parents=True)
    for n, (name, rows) in enumerate(splits.items()):
        write_split(root / f"{name}.parquet", rows, 1_000_000 * (n + 1))
    pl.DataFrame(
        {"user_idx": range(n_users), "user_id": [f"u{u}" for u in range(n_users)]},
        schema={"user_idx": pl.Int32, "user_id": pl.String},
    ).write_parquet(root / "users.parquet")
    pl.DataFrame(
        {"item_idx": range(n_items), "item_id": [f"i{i}" for i in range(n_items)]},
        schema={"item_idx": pl.Int32, "item_id": pl.String},
    ).write_parquet(root / "items.parquet")
    meta = {
        "n_users": n_users,
        "n_items": n_items,
        **{f"n_{name}": len(rows) for name, rows in splits.items()},
        "min_interactions": 1,
        "split": {"kind": "temporal"},
        "input_sha256": "0" * 64,
        "schema_version": 1,
        "dropped": {"invalid": {}, "duplicate": 0, "kcore": 0, "cold": 0},
    }
    (root / "metadata.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    """Random unique interactions; some users have no test item, some fewer than 20 unseen."""
    rng = np.random.default_rng(11)
    splits: dict[str, list[tuple[int, int]]] = {"train": [], "val": [], "test": []}
    for user in range(N_USERS):
        items = rng.permutation(N_ITEMS).tolist()
        n_train = 34 if user % 7 == 0 else int(rng.integers(3, 25))
        n_val, n_test = int(rng.integers(0, 3)), int(rng.integers(0, 4)) * (user % 5 != 1)
        splits["train"] += [(user, i) for i in items[:n_train]]
        splits["val"] += [(user, i) for i in items[n_train : n_train + n_val]]
        splits["test"] += [(user, i) for i in items[n_train + n_val : n_train + n_val + n_test]]
    return write_processed(tmp_path_factory.mktemp("data") / "processed", splits, N_USERS, N_ITEMS)


def save_ckpt(net: RecommenderNet, path: Path) -> Path:
    torch.save({"recsys": {"net": net.spec(), "data": {}}, "state_dict": net.state_dict()}, path)
    return path


def mf(n_users: int = N_USERS, n_items: int = N_ITEMS, seed: int = 0) -> MF:
    torch.manual_seed(seed)
    net = MF(n_users, n_items, embedding_dim=8, init_std=1.0)
    with torch.no_grad():
        net.bias.weight.normal_()
    return net.eval()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_ckpt(mf(), tmp_path_factory.mktemp("ckpt") / "mf.ckpt")


def read_pairs(processed: Path, name: str) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for u, i in (
        pl.read_parquet(processed / f"{name}.parquet").select("user_idx", "item_idx").rows()
    ):
        out.setdefault(u, set()).add(i)
    return out


def recompute(topk: pl.DataFrame, processed: Path, ks) -> dict[str, float]:
    """The metrics of docs/REFERENCE.md, Evaluation, from topk.parquet and the test split alone."""
    test = read_pairs(processed, "test")
    lists = {u: [] for u in test}
    for u, _, i in topk.sort("user_idx", "rank").select("user_idx", "rank", "item_idx").rows():
        lists[u].append(i)
    out: dict[str, float] = {"n_users": len(test)}
    for k in ks:
        recall = ndcg = 0.0
        for u, rel in test.items():
            hits = [i in rel for i in lists[u][:k]]
            recall += sum(hits) / len(rel)
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            ndcg += dcg / sum(1 / math.log2(r + 2) for r in range(min(k, len(rel))))
        out[f"test/recall@{k}"] = recall / len(test)
        out[f"test/ndcg@{k}"] = ndcg / len(test)
    return out


def check_topk(topk: pl.DataFrame, processed: Path, net: RecommenderNet, k: int) -> None:
    assert dict(topk.schema) == TOPK_SCHEMA
    train, val, test = (read_pairs(processed, name) for name in ("train", "val", "test"))
    users = topk.get_column("user_idx").to_list()
    starts = [n for n in range(len(users)) if n == 0 or users[n] != users[n - 1]]
    blocks = [users[n] for n in starts]
    assert len(blocks) == len(set(blocks)) and set(blocks) == set(test)  # one block per user
    with torch.no_grad():
        table = net.score_items(torch.arange(net.n_users))
    for user, block in topk.group_by("user_idx", maintain_order=True):
        user = user[0]
        seen = train.get(user, set()) | val.get(user, set())
        n_unseen = net.n_items - len(seen)
        assert block.get_column("rank").to_list() == list(range(1, min(k, n_unseen) + 1))
        items = block.get_column("item_idx").to_list()
        scores = block.get_column("score").to_numpy()
        assert not set(items) & seen and len(set(items)) == len(items)
        assert np.all(np.diff(scores) <= 0)
        np.testing.assert_allclose(scores, table[user, items].numpy(), rtol=1e-6, atol=1e-6)
        rest = [i for i in range(net.n_items) if i not in seen and i not in items]
        if rest:  # it is the top: nothing left out scores higher
            assert float(table[user, rest].max()) <= scores[-1]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_full_protocol_outputs(processed, ckpt, tmp_path):
    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(str(ckpt), str(processed), str(out), ks=(20, 10), batch_size=7)
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved) == METRIC_KEYS | coverage_keys(10, 20) == set(metrics)
    assert saved == pytest.approx(metrics, rel=1e-12)
    assert isinstance(saved["n_users"], int)
    assert sorted(p.name for p in out.iterdir()) == [
        "intervals.json",
        "metrics.json",
        "segments.json",
        "topk.parquet",
    ]
    intervals = json.loads((out / "intervals.json").read_text())
    assert intervals["n_users"] == saved["n_users"] and intervals["resamples"] == 1000
    for key, value in intervals["metrics"].items():
        assert value["mean"] == pytest.approx(saved[key], abs=1e-6)
        assert value["low"] <= value["mean"] <= value["high"]

    topk = pl.read_parquet(out / "topk.parquet")
    check_topk(topk, processed, mf(), k=20)
    want = recompute(topk, processed, (10, 20))
    assert want == pytest.approx({k: saved[k] for k in want}, rel=1e-5, abs=1e-7)
    assert saved["n_users"] == len(read_pairs(processed, "test")) < N_USERS
    for k in (10, 20):  # coverage over every evaluated user's top-K
        distinct = topk.filter(pl.col("rank") <= k)["item_idx"].n_unique()
        assert saved[f"test/coverage@{k}"] == pytest.approx(distinct / N_ITEMS)

    # The activity buckets partition the users: their weighted means are the overall ones.
    segments = json.loads((out / "segments.json").read_text())
    assert segments["k"] == [10, 20] and segments["history"] == "train + val"
    buckets = segments["user_activity"]["buckets"]
    assert sum(b["n_users"] for b in buckets) == saved["n_users"]
    for key in METRIC_KEYS - {"n_users"}:
        total = sum(b["n_users"] * b[key] for b in buckets if b["n_users"])
        assert total / saved["n_users"] == pytest.approx(saved[key]), key
    assert {k: segments["coverage"][k] for k in coverage_keys(10, 20)} == {
        k: saved[k] for k in coverage_keys(10, 20)
    }
    items = segments["item_popularity"]["buckets"]
    assert sum(b["n_items"] for b in items) == N_ITEMS
    for k in (10, 20):
        assert sum(b[f"test/recommended_share@{k}"] for b in items) == pytest.approx(1)


def test_sampled_protocol_adds_sampled_keys(processed, ckpt, tmp_path):
    full = evaluate_checkpoint(str(ckpt), str(processed), str(tmp_path / "full"))
    out = tmp_path / "sampled"
    metrics = evaluate_checkpoint(
        str(ckpt), str(processed), str(out), protocol="sampled", n_negatives=25, seed=4
    )
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == pytest.approx(metrics)
    assert METRIC_KEYS | {"sampled/hr@10", "sampled/ndcg@10"} <= set(saved)
    assert {k: saved[k] for k in full} == pytest.approx(full)
    assert all(0.0 <= saved[k] <= 1.0 for k in saved if k.startswith("sampled/") and "@" in k)

    # The negatives avoid every known interaction (train, val and test).
    splits = [pl.read_parquet(processed / f"{n}.parquet") for n in ("train", "val", "test")]
    every = pl.concat(splits)
    known = NegativeSampler(
        torch.from_numpy(every["user_idx"].to_numpy().astype(np.int64)),
        torch.from_numpy(every["item_idx"].to_numpy().astype(np.int64)),
        N_ITEMS,
    )
    test = splits[2]
    want = evaluate_sampled(
        mf(),
        torch.from_numpy(test["user_idx"].to_numpy().astype(np.int64)),
        torch.from_numpy(test["item_idx"].to_numpy().astype(np.int64)),
        known,
        (10, 20),
        25,
        4,
    )
    assert {k: saved[k] for k in want} == pytest.approx(want)


def test_other_cutoffs_set_the_keys_and_k(processed, ckpt, tmp_path):
    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(str(ckpt), str(processed), str(out), ks=[3, 7, 3])
    assert set(metrics) == {
        "test/recall@3",
        "test/ndcg@3",
        "test/recall@7",
        "test/ndcg@7",
        "n_users",
    } | coverage_keys(3, 7)
    topk = pl.read_parquet(out / "topk.parquet")
    assert topk.get_column("rank").max() == 7
    check_topk(topk, processed, mf(), k=7)
    want = recompute(topk, processed, (3, 7))
    assert want == pytest.approx({k: metrics[k] for k in want}, rel=1e-5, abs=1e-7)


def test_prepared_synthetic_data(small_reviews, tmp_path):
    processed = tmp_path / "processed"
    meta = prepare_dataset(
        small_reviews, processed, PrepareOptions(min_interactions=5), Console(quiet=True)
    )
    net = mf(meta["n_users"], meta["n_items"], seed=1)
    ckpt = save_ckpt(net, tmp_path / "mf.ckpt")
    out = tmp_path / "eval"
    metrics = evaluate_checkpoint(str(ckpt), str(processed), str(out))
    topk = pl.read_parquet(out / "topk.parquet")
    check_topk(topk, processed, net, k=20)
    want = recompute(topk, processed, (10, 20))
    assert want == pytest.approx({k: metrics[k] for k in want}, rel=1e-5, abs=1e-7)


def test_checkpoint_for_other_sizes_is_refused(processed, tmp_path):
    ckpt = save_ckpt(mf(N_USERS, N_ITEMS + 1), tmp_path / "big.ckpt")
    with pytest.raises(RecsysError) as err:
        evaluate_checkpoint(str(ckpt), str(processed), str(tmp_path / "eval"))
    message = str(err.value)
    assert f"{N_ITEMS + 1} items" in message and f"{N_USERS} x {N_ITEMS}" in message
    assert not (tmp_path / "eval").exists()


def failing_inputs(failure: str, ckpt: Path, processed: Path, tmp: Path):
    """(checkpoint, processed dir, extra arguments) that make the evaluation fail."""
    if failure == "other-sizes":
        return save_ckpt(mf(N_USERS + 2, N_ITEMS), tmp / "x.ckpt"), processed, {}
    if failure == "damaged-checkpoint":
        (tmp / "bad.ckpt").write_bytes(b"garbage, not a checkpoint")
        return tmp / "bad.ckpt", processed, {}
    if failure == "foreign-class":
        net = mf()
        spec = {**net.spec(), "_target_": "builtins.eval"}
        ckpt = tmp / "foreign.ckpt"
        torch.save({"recsys": {"net": spec, "data": {}}, "state_dict": net.state_dict()}, ckpt)
        return ckpt, processed, {}
    if failure == "no-data":
        return ckpt, tmp / "missing", {}
    if failure == "empty-test":
        splits = {"train": [(0, 0), (1, 1)], "val": [(0, 1)], "test": []}
        return ckpt, write_processed(tmp / "empty_test", splits, N_USERS, N_ITEMS), {}
    if failure == "compare-other-sizes":
        return (
            ckpt,
            processed,
            {"compare": str(save_ckpt(mf(N_USERS, N_ITEMS + 1), tmp / "o.ckpt"))},
        )
    if failure == "bad-bootstrap":
        return ckpt, processed, {"bootstrap": -1}
    if failure == "bad-k":
        return ckpt, processed, {"ks": [0, 10]}
    if failure == "bad-segments":
        return ckpt, processed, {"segments": SegmentSettings(user_activity_edges=(8, 2))}
    assert failure == "unknown-protocol"
    return ckpt, processed, {"protocol": "sampeld"}


MESSAGES = {
    "other-sizes": "trained on",
    "damaged-checkpoint": "not a readable torch checkpoint",
    "foreign-class": "not a recsys model",
    "no-data": "does not exist",
    "empty-test": "no users to evaluate",
    "compare-other-sizes": "trained on",
    "bad-bootstrap": "eval.bootstrap",
    "bad-k": "eval.k",
    "bad-segments": "eval.segments.user_activity_edges",
    "unknown-protocol": "eval.protocol",
}
FAILURES = list(MESSAGES)


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failing_evaluation_leaves_previous_outputs_untouched(failure, processed, ckpt, tmp_path):
    out = tmp_path / "eval"
    evaluate_checkpoint(str(ckpt), str(processed), str(out), ks=(5,))
    before = snapshot(out)
    bad_ckpt, bad_processed, kwargs = failing_inputs(failure, ckpt, processed, tmp_path)
    with pytest.raises(RecsysError, match=MESSAGES[failure]):
        evaluate_checkpoint(str(bad_ckpt), str(bad_processed), str(out), **kwargs)
    assert snapshot(out) == before


def test_comparison_of_two_checkpoints(processed, ckpt, tmp_path):
    """a - b per user with its interval; a model against itself differs by exactly nothing,
    and a report not asked for again is removed rather than left stale."""
    other = save_ckpt(mf(seed=7), tmp_path / "other.ckpt")
    out = tmp_path / "eval"
    a = evaluate_checkpoint(str(ckpt), str(processed), str(out), compare=str(other))
    report = json.loads((out / "comparison.json").read_text())
    b = evaluate_checkpoint(str(other), str(processed), str(tmp_path / "b"))
    for key, value in report["metrics"].items():
        assert value["a"] == pytest.approx(a[key], abs=1e-6)
        assert value["b"] == pytest.approx(b[key], abs=1e-6)
        assert value["difference"] == pytest.approx(a[key] - b[key], abs=1e-6)
        assert value["low"] <= value["difference"] <= value["high"]
        assert 0 <= value["p_a_better"] <= 1
    evaluate_checkpoint(str(ckpt), str(processed), str(out), compare=str(ckpt))
    same = json.loads((out / "comparison.json").read_text())["metrics"]
    assert all(v["difference"] == v["low"] == v["high"] == 0 for v in same.values())
    evaluate_checkpoint(str(ckpt), str(processed), str(out), bootstrap=0)
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "segments.json",
        "topk.parquet",
    ]
    off = SegmentSettings(enabled=False)
    metrics = evaluate_checkpoint(str(ckpt), str(processed), str(out), bootstrap=0, segments=off)
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "topk.parquet"]
    assert set(metrics) == METRIC_KEYS


def test_cli_prints_the_segment_table_and_ends_with_ndcg(processed, ckpt, tmp_path):
    """The real recsys-eval: typed eval.segments overrides, the table, NDCG@10 last."""
    out = tmp_path / "eval"
    res = subprocess.run(
        [BIN / "recsys-eval", f"ckpt_path={ckpt}", f"data.processed_dir={processed}",
         f"eval.output_dir={out}", "eval.bootstrap=0", "eval.segments.user_activity_edges=[5,15]",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "OMP_WAIT_POLICY": "PASSIVE"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    metrics = json.loads((out / "metrics.json").read_text())
    assert float(lines[-1]) == pytest.approx(metrics["test/ndcg@10"], abs=1e-6)
    segments = json.loads((out / "segments.json").read_text())
    assert segments["user_activity"]["edges"] == [5, 15]
    assert segments["user_activity"]["edges_from"] == "eval.segments.user_activity_edges"
    header = next(n for n, line in enumerate(lines) if line.startswith("segment "))
    assert lines[header].split()[-3:] == ["R@10", "N@10", "top-10"]
    rows = lines[header + 1 : header + 8]
    labels = ["users low", "users mid", "users high", "items head", "items mid", "items tail",
              "items new"]  # fmt: skip
    assert [row[: len(name)] for row, name in zip(rows, labels, strict=True)] == labels
    low = segments["user_activity"]["buckets"][0]
    assert rows[0].split()[-3:] == [f"{low['n_users']:,}", f"{low['test/recall@10']:.4f}",
                                    f"{low['test/ndcg@10']:.4f}"]  # fmt: skip
    assert lines[header + 8].startswith("coverage@10 ")
