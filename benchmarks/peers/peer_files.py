"""What benchmarks/peers.py hands the peer workers and what they hand back: plain .npy and JSON.

The workers run in their own venvs (RecBole needs numpy < 2), so they cannot import recsys;
this module needs only numpy (and scipy for the masks) and is imported on both sides.

Inputs (one directory): `{train,val,test}.npy` as (n, 2) int64 (user_idx, item_idx) in the
project's indices, `{val,test}_users.npy` (who is ranked: users with a relevant item, in the
order of recsys' EvalSet), `meta.json` (n_users, n_items).
Outputs (one run directory): `{val,test}_top.npy`, each user's top-K unseen items (-1 pads a
short list), rows aligned with `{val,test}_users.npy`, and `result.json`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")
# What each ranking masks, as in recsys' datamodule: val hides train, test hides train + val.
MASKED_BY = {"val": ("train",), "test": ("train", "val")}


@dataclass(frozen=True)
class Inputs:
    n_users: int
    n_items: int
    pairs: dict[str, np.ndarray]  # split -> (n, 2) int64 (user_idx, item_idx)
    eval_users: dict[str, np.ndarray]  # "val" / "test" -> users to rank

    def seen(self, split: str) -> Any:
        """users x items CSR (float32 ones) of what a `split` ranking must not recommend."""
        from scipy.sparse import csr_matrix

        pairs = np.concatenate([self.pairs[s] for s in MASKED_BY[split]])
        ones = np.ones(len(pairs), dtype=np.float32)
        m = csr_matrix((ones, (pairs[:, 0], pairs[:, 1])), shape=(self.n_users, self.n_items))
        m.sum_duplicates()
        m.data[:] = 1.0  # a repeated (user, item) is still one seen item
        return m


def write_inputs(
    directory: Path,
    pairs: dict[str, np.ndarray],
    eval_users: dict[str, np.ndarray],
    n_users: int,
    n_items: int,
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        np.save(directory / f"{split}.npy", pairs[split].astype(np.int64))
    for split in EVAL_SPLITS:
        np.save(directory / f"{split}_users.npy", eval_users[split].astype(np.int64))
    (directory / "meta.json").write_text(json.dumps({"n_users": n_users, "n_items": n_items}))


def read_inputs(directory: Path) -> Inputs:
    meta = json.loads((directory / "meta.json").read_text())
    return Inputs(
        n_users=int(meta["n_users"]),
        n_items=int(meta["n_items"]),
        pairs={s: np.load(directory / f"{s}.npy") for s in SPLITS},
        eval_users={s: np.load(directory / f"{s}_users.npy") for s in EVAL_SPLITS},
    )


def save_top(out: Path, split: str, top: np.ndarray) -> None:
    np.save(out / f"{split}_top.npy", top.astype(np.int64))


def load_top(out: Path, split: str) -> np.ndarray:
    return np.load(out / f"{split}_top.npy")


def write_result(out: Path, payload: dict[str, Any]) -> None:
    (out / "result.json").write_text(json.dumps(payload, indent=2))


def ask_judge(epoch: int, out: Path) -> dict[str, Any]:
    """Hand this epoch's val ranking (`out/val_top.npy`) to the orchestrator, which scores it
    with recsys' own metric code and answers {"ndcg", "best", "stop"} on stdin (ndcg: val
    NDCG@10): one stopping rule and one NDCG for every peer without its own validation loop."""
    print(json.dumps({"epoch": epoch, "top": str(out / "val_top.npy")}))
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("the orchestrator closed the pipe")
    return json.loads(line)
