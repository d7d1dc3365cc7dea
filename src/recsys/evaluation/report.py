"""`recsys-eval`'s job: a checkpoint and a processed directory in, metrics.json, topk.parquet
and the optional reports out (docs/REFERENCE.md, Evaluation). Nothing is written unless
everything succeeded."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch

from recsys.data.evalsets import EvalSet
from recsys.data.io import atomic_file, write_json
from recsys.data.processed import ProcessedData, load_processed
from recsys.data.sampling import NegativeSampler
from recsys.devices import resolve_device
from recsys.errors import RecsysError
from recsys.evaluation.options import EvalSettings, SegmentSettings
from recsys.evaluation.protocols import RankedBatch, evaluate_full, evaluate_sampled
from recsys.evaluation.segments import check_settings, segment_report
from recsys.evaluation.uncertainty import bootstrap_means, intervals, paired, per_user
from recsys.models.checkpoint import CheckpointError, load_net

TOPK_SCHEMA = {"user_idx": pl.Int32, "rank": pl.Int16, "item_idx": pl.Int32, "score": pl.Float32}


def topk_frame(ranked: Sequence[RankedBatch]) -> pl.DataFrame:
    """One block of rows per user, ranks 1..K; masked (seen) slots are left out."""
    parts = []
    for batch in ranked:
        valid = batch.valid.numpy()
        k = valid.shape[1]
        users = np.broadcast_to(batch.users.numpy()[:, None], valid.shape)
        ranks = np.broadcast_to(np.arange(1, k + 1)[None, :], valid.shape)
        parts.append(
            pl.DataFrame(
                {
                    "user_idx": users[valid].astype(np.int32),
                    "rank": ranks[valid].astype(np.int16),
                    "item_idx": batch.items.numpy()[valid].astype(np.int32),
                    "score": batch.scores.numpy()[valid].astype(np.float32),
                }
            )
        )
    return pl.concat(parts) if parts else pl.DataFrame(schema=TOPK_SCHEMA)


def check_ks(ks: Sequence[int]) -> list[int]:
    if not ks or any(not isinstance(k, int) or k < 1 or k > 1000 for k in ks):
        raise RecsysError(f"eval.k must be a non-empty list of integers in 1..1000, got {list(ks)}")
    return sorted(set(ks))


def _load_trained_net(ckpt_path: str, data: ProcessedData, processed_dir: str):
    """The checkpoint's net, refused unless it was trained on data of this shape."""
    try:
        net, meta = load_net(ckpt_path)
    except CheckpointError as err:
        raise RecsysError(str(err), path=ckpt_path) from err
    if (net.n_users, net.n_items) != (data.n_users, data.n_items):
        raise RecsysError(
            f"checkpoint was trained on {net.n_users} users x {net.n_items} items "
            f"(data '{meta['data'].get('processed_dir')}'); '{processed_dir}' has "
            f"{data.n_users} x {data.n_items}. Evaluate on the data it was trained on.",
            path=ckpt_path,
        )
    return net


def evaluate_checkpoint(
    ckpt_path: str,
    processed_dir: str,
    output_dir: str,
    ks: Sequence[int] = EvalSettings.k,
    protocol: str = EvalSettings.protocol,
    batch_size: int = EvalSettings.batch_size,
    n_negatives: int = EvalSettings.n_negatives,
    seed: int = EvalSettings.seed,
    device: str = EvalSettings.device,
    bootstrap: int = EvalSettings.bootstrap,
    confidence: float = EvalSettings.confidence,
    compare: str | None = None,
    segments: SegmentSettings = EvalSettings.segments,
) -> dict[str, float | int]:
    """metrics.json and topk.parquet; with `bootstrap` resamples, intervals.json (a percentile
    interval per metric); with `compare` (another checkpoint on the same data),
    comparison.json (this minus that, per user, and its interval); with `segments.enabled`,
    segments.json (the metrics by user activity, item popularity and item age) and the
    top-K's catalogue coverage and popularity percentile in metrics.json."""
    ks = check_ks(ks)
    check_settings(segments)
    try:
        on = resolve_device(device)
    except ValueError as err:
        raise RecsysError(f"eval.device: {err}") from err
    if protocol not in ("full", "sampled"):
        raise RecsysError(f"eval.protocol must be 'full' or 'sampled', got '{protocol}'")
    if bootstrap < 0 or not 0 < confidence < 1:
        raise RecsysError(
            f"eval.bootstrap must be >= 0 and eval.confidence in (0, 1), got {bootstrap} and "
            f"{confidence}"
        )
    if compare is not None and bootstrap < 1:
        raise RecsysError("compare needs eval.bootstrap >= 1 (the interval of the difference)")
    data = load_processed(processed_dir)
    net = _load_trained_net(ckpt_path, data, processed_dir)
    other = _load_trained_net(compare, data, processed_dir) if compare is not None else None
    tr, va, te = data.train, data.val, data.test
    test_set = EvalSet.for_split(data, "test")
    if test_set.users.numel() == 0:
        raise RecsysError(
            "the test split has no users to evaluate", path=data.path / "test.parquet"
        )
    net.to(on)
    with torch.inference_mode():
        values, ranked = evaluate_full(net, test_set, ks, batch_size)
        metrics: dict[str, float | int] = {
            f"test/{name}": value for name, value in values.items() if name != "n_users"
        }
        metrics["n_users"] = values["n_users"]
        if protocol == "sampled":
            known = NegativeSampler(
                torch.cat([tr.users, va.users, te.users]),
                torch.cat([tr.items, va.items, te.items]),
                data.n_items,
            )
            metrics.update(
                evaluate_sampled(net, te.users, te.items, known, ks, n_negatives, seed, batch_size)
            )
        if other is not None:
            _, other_ranked = evaluate_full(other.to(on), test_set, ks, batch_size)
    out = Path(output_dir)
    reports: dict[str, dict] = {}
    if segments.enabled:
        reports["segments.json"] = segment_report(ranked, test_set, data, ks, segments)
        for k in ks:
            for name in (f"test/coverage@{k}", f"test/avg_popularity_percentile@{k}"):
                metrics[name] = reports["segments.json"]["coverage"][name]
    if bootstrap:
        users, per_user_values = per_user(ranked, ks)
        reports["intervals.json"] = {
            "method": "percentile bootstrap over test users",
            "resamples": bootstrap, "confidence": confidence, "seed": seed,
            "n_users": int(users.numel()),
            "metrics": {
                f"test/{name}": v
                for name, v in intervals(per_user_values, bootstrap, confidence, seed).items()
            },
        }  # fmt: skip
        if other is not None:
            reports["comparison.json"] = comparison(
                ckpt_path, compare, users, per_user_values, per_user(other_ranked, ks),
                bootstrap, confidence, seed,
            )  # fmt: skip
    frame = topk_frame(ranked)
    with atomic_file(out / "topk.parquet") as fh:
        frame.write_parquet(fh)
    for name in ("intervals.json", "comparison.json", "segments.json"):
        if name in reports:
            write_json(out / name, reports[name])
        else:  # not asked for this time: an older run's report would pass for this one's
            (out / name).unlink(missing_ok=True)
    write_json(out / "metrics.json", metrics)  # keys sorted by write_json
    return metrics


def comparison(
    ckpt_a: str,
    ckpt_b: str,
    users_a: torch.Tensor,
    values_a: dict[str, torch.Tensor],
    other: tuple[torch.Tensor, dict[str, torch.Tensor]],
    resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    """A paired comparison: per-user differences a - b, their mean and percentile interval,
    and the share of resamples in which a is better."""
    diff = paired(users_a, values_a, *other)
    boot = bootstrap_means(diff, resamples, seed)
    spread = intervals(diff, resamples, confidence, seed)
    values_b = other[1]
    return {
        "a": str(ckpt_a), "b": str(ckpt_b),
        "method": "paired percentile bootstrap over test users (a - b)",
        "resamples": resamples, "confidence": confidence, "seed": seed,
        "n_users": int(users_a.numel()),
        "metrics": {
            f"test/{name}": {
                "a": float(values_a[name].mean()), "b": float(values_b[name].mean()),
                "difference": spread[name]["mean"],
                "low": spread[name]["low"], "high": spread[name]["high"],
                "p_a_better": float((boot[name] > 0).double().mean()),
            }
            for name in diff
        },
    }  # fmt: skip
