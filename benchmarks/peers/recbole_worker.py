"""RecBole NeuMF / BPR on the project's own splits (runs in benchmarks/.work/venvs/recbole).

The splits go in as they are (atomic files + `benchmark_filename`: no re-split), with `.user`
and `.item` files listing every index so RecBole ranks the same catalogue. RecBole's own
trainer runs: validation with its full-ranking evaluator every epoch, early stopping, saving
the best epoch. Then the best model's top-K unseen items go back in the project's indices
(RecBole renumbers tokens) for recsys' metric code, and RecBole's own test evaluation of the
same model is kept as a cross-check.
"""

from __future__ import annotations

import os

# RecBole's checkpoints hold more than weights, and torch >= 2.6 loads weights only by default.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peer_files import Inputs, read_inputs, save_top, write_result

DATASET = "peers"
# RecBole's names for the three benchmark files, in the order of our splits.
SUFFIXES = {"train": "train", "val": "valid", "test": "test"}
# Score entries per ranking batch: full-sort models score users x items at once, pair models
# (NeuMF) run the MLP per (user, item) pair, which costs ~100x more memory per entry.
FULL_SORT_BUDGET = 1 << 22
PAIR_BUDGET = 1 << 17


def write_atomic(data: Inputs, root: Path) -> Path:
    """RecBole atomic files under root/peers/; tokens are the project's own indices."""
    directory = root / DATASET
    directory.mkdir(parents=True, exist_ok=True)
    for split, suffix in SUFFIXES.items():
        path = directory / f"{DATASET}.{suffix}.inter"
        np.savetxt(
            path,
            data.pairs[split],
            fmt="%d",
            delimiter="\t",
            header="user_id:token\titem_id:token",
            comments="",
        )
    # Every user and item, so items without train rows are still ranked (as recsys does).
    for name, n in (("user", data.n_users), ("item", data.n_items)):
        np.savetxt(
            directory / f"{DATASET}.{name}",
            np.arange(n),
            fmt="%d",
            header=f"{name}_id:token",
            comments="",
        )
    return root


def recbole_config(
    args: argparse.Namespace, data_path: Path, pointwise: bool, closed_form: bool = False
) -> dict[str, Any]:
    # Pointwise models (NeuMF: BCE) get positives and their negatives as separate rows of one
    # batch: double it so that a step sees --batch-size positives, like a BPR batch of triplets.
    batch = args.batch_size * (2 if pointwise else 1)
    return {
        "data_path": str(data_path),
        "checkpoint_dir": str(args.out / "saved"),
        "benchmark_filename": list(SUFFIXES.values()),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id"], "user": ["user_id"], "item": ["item_id"]},
        "eval_args": {"group_by": "user", "order": "TO", "mode": "full"},
        "metrics": ["Recall", "NDCG"],
        "topk": [10, 20],
        "valid_metric": "NDCG@10",
        # 4 decimals (the default) would turn small gains into ties in early stopping.
        "metric_decimal_place": 6,
        "epochs": args.max_epochs,
        # RecBole stops once `stopping_step` is exceeded: patience 5 is stopping_step 4.
        "stopping_step": args.patience - 1,
        "eval_step": 1,
        "train_batch_size": batch,
        "learning_rate": args.lr,
        "seed": args.seed,
        "reproducibility": True,
        "use_gpu": False,
        "show_progress": False,
        "worker": 0,
        **({"eval_batch_size": args.eval_batch_size} if args.eval_batch_size else {}),
        # A grid point (e.g. reg_weight for EASE); closed-form models fit once.
        **{key: float(value) for key, _, value in (p.partition("=") for p in args.param)},
        **({"epochs": 1} if closed_form else {}),
    }


class IdMaps:
    """The project's indices <-> RecBole's internal ids (0 is RecBole's padding)."""

    def __init__(self, dataset: Any, field: str, n: int):
        tokens = dataset.field2id_token[field]
        ours = np.asarray(tokens[1:]).astype(np.int64)
        if len(ours) != n or set(ours.tolist()) != set(range(n)):
            raise SystemExit(f"RecBole kept {len(ours)} of {n} {field}s: the catalogue differs")
        self.inner_of_ours = np.empty(n, dtype=np.int64)
        self.inner_of_ours[ours] = np.arange(1, n + 1)
        self.n_inner = len(tokens)


@torch.no_grad()
def rank(model: Any, users: np.ndarray, seen: Any, k: int, maps: dict[str, IdMaps]) -> np.ndarray:
    """Top-k unseen items (project indices) of `users` (project indices)."""
    from recbole.data.interaction import Interaction

    model.eval()
    n_inner = maps["item"].n_inner
    columns = torch.from_numpy(maps["item"].inner_of_ours)  # our item j -> RecBole's column
    uid, iid = model.USER_ID, model.ITEM_ID

    def scores_of(inner_users: torch.Tensor) -> torch.Tensor:
        if full_sort:
            return model.full_sort_predict(Interaction({uid: inner_users})).view(-1, n_inner)
        # NeuMF has no full-sort scorer: every (user, item) pair, as RecBole's evaluator does.
        pairs = {
            uid: inner_users.repeat_interleave(n_inner),
            iid: torch.arange(n_inner).repeat(len(inner_users)),
        }
        return model.predict(Interaction(pairs)).view(-1, n_inner)

    try:
        model.full_sort_predict(Interaction({uid: torch.ones(1, dtype=torch.long)}))
        full_sort = True
    except NotImplementedError:
        full_sort = False
    per_batch = max(1, (FULL_SORT_BUDGET if full_sort else PAIR_BUDGET) // n_inner)
    tops = []
    for lo in range(0, len(users), per_batch):
        batch = users[lo : lo + per_batch]
        inner = torch.from_numpy(maps["user"].inner_of_ours[batch])
        scores = scores_of(inner)[:, columns].float()
        rows, cols = seen[batch].nonzero()
        scores[torch.from_numpy(rows), torch.from_numpy(cols)] = -torch.inf
        top_scores, top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        top[torch.isneginf(top_scores)] = -1
        tops.append(top.numpy())
    return np.concatenate(tops) if tops else np.empty((0, k), dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", choices=["NeuMF", "BPR", "EASE"], required=True)
    parser.add_argument("--max-epochs", type=int, default=50)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-batch-size", type=int, default=None, help="default: RecBole's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--topk", type=int, default=100)
    parser.add_argument("--cross-check", action="store_true", help="also RecBole's test eval")
    parser.add_argument("--param", action="append", default=[], help="KEY=NUMBER config value")
    args = parser.parse_args()
    # RecBole's Config also reads `--key=value` from sys.argv: ours (--topk=100) would override
    # its settings.
    sys.argv = sys.argv[:1]
    torch.set_num_threads(args.threads)

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import InputType, ModelType, get_model, init_logger, init_seed

    start = time.perf_counter()
    data = read_inputs(args.inputs)
    data_path = write_atomic(data, args.out / "atomic")
    model_class = get_model(args.model)
    pointwise = model_class.input_type == InputType.POINTWISE
    config = Config(
        model=args.model,
        dataset=DATASET,
        config_dict=recbole_config(
            args, data_path, pointwise, closed_form=model_class.type == ModelType.TRADITIONAL
        ),
    )
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)  # RecBole's log/ and log_tensorboard/ land in the cwd: the run dir
    torch.set_num_threads(args.threads)  # after RecBole's set-up, which may change it
    dataset = create_dataset(config)
    maps = {
        "user": IdMaps(dataset, "user_id", data.n_users),
        "item": IdMaps(dataset, "item_id", data.n_items),
    }
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = model_class(config, train_data._dataset).to(config["device"])

    class TimedTrainer(Trainer):
        """RecBole's Trainer, timing only its training passes (in-loop throughput)."""

        train_s = 0.0
        epochs_trained = 0

        def _train_epoch(self, *a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            loss = super()._train_epoch(*a, **kw)
            self.train_s += time.perf_counter() - t
            self.epochs_trained += 1
            return loss

    trainer = TimedTrainer(config, model)
    epochs: list[dict[str, Any]] = []
    fit_start = time.perf_counter()

    def after_validation(epoch_idx: int, score: float) -> None:
        # Called after validation and the best-model save: the same point as recsys' time/fit_s.
        fit_s = time.perf_counter() - fit_start
        epochs.append({"epoch": epoch_idx + 1, "fit_s": fit_s, "val_ndcg@10": float(score)})

    trainer.fit(
        train_data, valid_data, saved=True, show_progress=False, callback_fn=after_validation
    )
    fit_s = time.perf_counter() - fit_start

    # The best epoch's weights (saved by RecBole), ranked for recsys' metrics.
    checkpoint = torch.load(trainer.saved_model_file, map_location="cpu", weights_only=False)
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    for split in ("val", "test"):
        save_top(
            args.out, split, rank(model, data.eval_users[split], data.seen(split), args.topk, maps)
        )
    export_done = time.perf_counter()

    cross_check, cross_check_s = None, 0.0
    if args.cross_check:
        t = time.perf_counter()
        result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        cross_check = {key: float(value) for key, value in result.items()}
        cross_check_s = time.perf_counter() - t

    best_epoch = int(checkpoint["epoch"]) + 1
    negatives = (config["train_neg_sample_args"] or {}).get("sample_num", 1)  # EASE: none
    triplets = train_data._dataset.inter_num * (negatives if isinstance(negatives, int) else 1)
    write_result(
        args.out,
        {
            "params": {
                "train_batch_size": config["train_batch_size"],
                "eval_batch_size": config["eval_batch_size"],
                "learning_rate": config["learning_rate"],
                **{key: config[key] for key, _, _ in (p.partition("=") for p in args.param)},
                "stopping_step": config["stopping_step"],
                "pointwise": pointwise,
                "n_parameters": sum(p.numel() for p in model.parameters()),
            },
            "epochs": epochs,
            "best_epoch": best_epoch,
            "best_valid_score": float(trainer.best_valid_score),
            "train_s": trainer.train_s,
            "triplets": triplets * trainer.epochs_trained,
            "fit_s": fit_s,
            "setup_s": fit_start - start,
            "export_s": export_done - fit_s - fit_start,
            "recbole_test": cross_check,
            "cross_check_s": cross_check_s,
        },
    )


if __name__ == "__main__":
    main()
