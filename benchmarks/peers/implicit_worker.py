"""implicit BPR / ALS on the project's train split (runs in benchmarks/.work/venvs/implicit).

implicit has no validation hook that can stop training, so the model is fitted one epoch per
`fit()` call (it continues from its current factors) and, after each epoch, its val ranking
goes to the orchestrator, which scores it with recsys' metric code and says when to stop.
Prints only the judge protocol on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from peer_files import ask_judge, read_inputs, save_top, write_result

# Users per recommend() call: bounds the users x items score block implicit materialises.
RANK_USERS = 2048


def build(args: argparse.Namespace) -> Any:
    # A Generator (not an int) as random_state: every fit() call would otherwise re-seed and
    # BPR would draw the same negatives each epoch.
    rng = np.random.default_rng(args.seed)
    common = {"factors": args.factors, "iterations": 1, "num_threads": args.threads}
    common |= params_of(args.param)  # a grid point: learning_rate, regularization, alpha, ...
    if args.model == "bpr":
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(random_state=rng, **common)
    from implicit.cpu.als import AlternatingLeastSquares

    return AlternatingLeastSquares(random_state=rng, **common)


def params_of(pairs: list[str]) -> dict[str, float]:
    return {key: float(value) for key, _, value in (p.partition("=") for p in pairs)}


def rank(model: Any, users: np.ndarray, seen: Any, k: int) -> np.ndarray:
    """Top-k unseen items per user; -1 where implicit had fewer than k to give."""
    tops = []
    for lo in range(0, len(users), RANK_USERS):
        batch = users[lo : lo + RANK_USERS]
        ids, scores = model.recommend(batch, seen[batch], N=k, filter_already_liked_items=True)
        ids = np.where(np.isfinite(scores) & (scores > -1e30), ids, -1)  # filtered slots
        tops.append(ids)
    return np.concatenate(tops) if tops else np.empty((0, k), dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", choices=["bpr", "als"], required=True)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--topk", type=int, default=100)
    parser.add_argument("--param", action="append", default=[], help="KEY=NUMBER for the model")
    args = parser.parse_args()

    start = time.perf_counter()
    data = read_inputs(args.inputs)
    train = data.seen("val")  # the train split as users x items CSR of ones
    seen_test = data.seen("test")
    model = build(args)

    fit_start = time.perf_counter()
    train_s, epochs, best = 0.0, [], None
    for epoch in range(1, args.max_epochs + 1):
        t = time.perf_counter()
        model.fit(train, show_progress=False)
        train_s += time.perf_counter() - t
        save_top(args.out, "val", rank(model, data.eval_users["val"], train, args.topk))
        reply = ask_judge(epoch, args.out)
        epochs.append(
            {"epoch": epoch, "fit_s": time.perf_counter() - fit_start, "val_ndcg@10": reply["ndcg"]}
        )
        if reply["best"]:  # keep the best epoch's factors: it is the one tested
            best = (epoch, model.user_factors.copy(), model.item_factors.copy())
        if reply["stop"]:
            break
    assert best is not None
    best_epoch, model.user_factors, model.item_factors = best
    for split, seen in (("val", train), ("test", seen_test)):
        save_top(args.out, split, rank(model, data.eval_users[split], seen, args.topk))
    write_result(
        args.out,
        {
            "params": {"factors": args.factors, "threads": args.threads, **model_params(model)},
            "epochs": epochs,
            "best_epoch": best_epoch,
            "train_s": train_s,
            # BPR draws one triplet per train interaction and epoch; ALS sweeps them all.
            "triplets": int(train.nnz) * len(epochs),
            "fit_s": time.perf_counter() - fit_start,
            "setup_s": fit_start - start,
        },
    )


def model_params(model: Any) -> dict[str, Any]:
    names = ("learning_rate", "regularization", "alpha", "verify_negative_samples")
    return {n: getattr(model, n) for n in names if hasattr(model, n)}


if __name__ == "__main__":
    main()
