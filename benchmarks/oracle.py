"""The ceiling of a synthetic dataset: test NDCG@10 / Recall@20 of ranking by the generator's
own choice model, which no recommender trained on the reviews can know.

    python benchmarks/oracle.py            # the demo data
    python benchmarks/oracle.py --drift    # the popularity-drift dataset
    python benchmarks/oracle.py --pool static   # ablation: what the test-time pool adds

The generator (recsys.data.synthetic) draws a review's candidates by popularity among the items
released by its time t (a share among recent releases) and picks one by Gumbel-max over
user.item / temperature. With M candidates drawn i.i.d. from q_t (popularity within the pool at
t), the chance that item i wins is exactly
    P(i | u, t) = M q_t(i) E[ e_i / (e_i + S') ],  e_j = exp(user.j / T),
S' the sum of e_j over the other M - 1 candidates. The oracle estimates the expectation by
SAMPLES draws of (t spread over the test period, the M - 1 others) per test user, for every
item at once, ranks the user's unseen items by the average, and is scored by the same code
and masks (train + val seen) as every contender of `make bench-peers`. It says how far a
quality ratio against the peers can go on this data: a model at the oracle's NDCG@10 has
nothing left to learn.
`--pool static` keeps the popularity but forgets release dates and recency (no model trained
on counts alone can know them); `--pool uniform` keeps the affinity alone.
Results: benchmarks/results/oracle[_drift].json, one entry per pool.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import numpy as np
import polars as pl
import torch
from common import DRIFT_SPEC, console, machine, synthetic_processed, write_result
from peers import KS, ranking_metrics

from recsys.data.evalsets import EvalSet
from recsys.data.options import DAY_MS, SyntheticSpec
from recsys.data.processed import load_processed
from recsys.data.synthetic import World, _draw_candidates, _guide_table, build_world

SAMPLES = 128  # (t, other candidates) draws per test user
USER_BATCH = 256


def candidate_distribution(world: World, spec: SyntheticSpec, t: int) -> np.ndarray:
    """q_t over the world's items (release order), as `_draw_candidates` draws at time t:
    popularity among the items released by t, mixed with popularity among recent releases."""
    weight = np.diff(world.item_cdf, prepend=0.0)
    released = world.item_release_ms <= t
    recent = released & (world.item_release_ms >= t - spec.recent_days * DAY_MS)
    if not recent.any():
        recent = released
    q_all = np.where(released, weight, 0.0) / weight[released].sum()
    q_recent = np.where(recent, weight, 0.0) / weight[recent].sum()
    return (1 - spec.recent_share) * q_all + spec.recent_share * q_recent


def pool_world(world: World, spec: SyntheticSpec, pool: str) -> tuple[World, SyntheticSpec]:
    """The generator with its candidate pool simplified for an ablation (see the module doc)."""
    if pool == "time":
        return world, spec
    released = np.full_like(world.item_release_ms, np.iinfo(np.int64).min // 2)
    n = len(world.item_cdf)
    cdf = world.item_cdf if pool == "static" else np.arange(1, n + 1, dtype=np.float64)
    simple = dataclasses.replace(
        world, item_release_ms=released, item_cdf=cdf, cdf_guide=_guide_table(cdf)
    )
    return simple, dataclasses.replace(spec, recent_share=0.0)


def world_index(processed_ids: pl.Series, world_ids: np.ndarray, what: str) -> np.ndarray:
    lookup = {str(x): n for n, x in enumerate(world_ids.tolist())}
    missing = [x for x in processed_ids.to_list() if x not in lookup]
    if missing:
        raise SystemExit(f"{len(missing)} {what} ids are not the generator's (e.g. {missing[0]})")
    return np.array([lookup[x] for x in processed_ids.to_list()], dtype=np.int64)


def oracle_top(
    world: World, spec: SyntheticSpec, processed, evalset: EvalSet, k: int, seed: int = 0
) -> np.ndarray:
    """Each evaluated user's top-k processed items by the generator's choice probability."""
    data = load_processed(processed)
    users = pl.read_parquet(processed / "users.parquet").sort("user_idx")["user_id"]
    items = pl.read_parquet(processed / "items.parquet").sort("item_idx")["item_id"]
    user_w = torch.from_numpy(world_index(users, world.user_ids, "user"))
    item_w = torch.from_numpy(world_index(items, world.item_ids, "item"))
    # Items without train interactions (released after train) are cold: the split drops their
    # test rows, so the oracle ranks them last, as no model could have learnt them either.
    cold = torch.bincount(data.train.items.long(), minlength=data.n_items) == 0
    lo, hi = data.metadata["split"]["test_range"]
    times = (lo + (np.arange(SAMPLES) + 0.5) / SAMPLES * (hi - lo)).astype(np.int64)
    q = torch.from_numpy(np.stack([candidate_distribution(world, spec, int(t)) for t in times]))
    rng = np.random.default_rng(seed)
    uf = torch.from_numpy(world.user_factors).double()
    itf = torch.from_numpy(world.item_factors).double()
    m = spec.candidates
    tops = []
    for start in range(0, evalset.users.numel(), USER_BATCH):
        batch = evalset.users[start : start + USER_BATCH]
        b = batch.numel()
        u = uf[user_w[batch]]  # [b, dim]
        e = torch.exp(u @ itf.T / spec.affinity_temperature)  # [b, world items]
        # The other M - 1 candidates of each (user, t), by the generator's own draw (a private
        # helper on purpose: the oracle must draw exactly as the data was drawn).
        others = _draw_candidates(world, spec, rng, np.tile(times, b))[:, : m - 1]
        others = torch.from_numpy(np.ascontiguousarray(others)).view(b, SAMPLES, m - 1)
        s_rest = torch.gather(e, 1, others.view(b, -1)).view(b, SAMPLES, m - 1).sum(2)
        prob = torch.zeros_like(e)
        for j in range(SAMPLES):  # M q_t(i) E[e_i / (e_i + S')], without the constant M
            prob += q[j] * e / (e + s_rest[:, j : j + 1])
        prob = prob[:, item_w]
        prob[:, cold] = -2.0  # never relevant: preprocessing drops test rows of cold items
        masks = evalset.batch(batch)
        prob[masks["seen_rows"], masks["seen_items"]] = -1.0
        tops.append(torch.topk(prob, k, dim=1).indices.numpy())
    return np.concatenate(tops)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--drift", action="store_true", help="the popularity-drift dataset")
    parser.add_argument("--n-interactions", type=int, default=300_000)
    parser.add_argument(
        "--pool", nargs="+", default=["time", "static", "uniform"],
        choices=["time", "static", "uniform"], help="candidate pools the oracle knows",
    )  # fmt: skip
    args = parser.parse_args()
    overrides: dict[str, Any] = DRIFT_SPEC if args.drift else {}
    spec = SyntheticSpec(n_interactions=args.n_interactions, **overrides)
    processed = synthetic_processed(args.n_interactions, **overrides)
    world = build_world(spec)
    data = load_processed(processed)
    tr, va, te = data.train, data.val, data.test
    test = EvalSet.build(
        [(tr.users, tr.items), (va.users, va.items)], (te.users, te.items), data.n_users
    )  # as recsys' datamodule and the peers' benchmark build it
    report: dict[str, Any] = {
        "machine": machine(),
        "data": str(processed),
        "spec": dict(spec.__dict__),
        "test_users": int(test.users.numel()),
        "samples_per_user": SAMPLES,
        "pools": {},
    }
    for pool in args.pool:
        top = oracle_top(*pool_world(world, spec, pool), processed, test, max(KS))
        metrics = ranking_metrics(top, test, data.n_items)
        report["pools"][pool] = {f"test_{n}": round(v, 4) for n, v in metrics.items()}
        path = write_result("oracle_drift" if args.drift else "oracle", report)
        console.print(
            f"oracle ({pool} pool) on {processed.parent.name}: test NDCG@10 "
            f"{metrics['ndcg@10']:.4f}, Recall@20 {metrics['recall@20']:.4f} -> {path}"
        )


if __name__ == "__main__":
    main()
