"""LightningDataModule over a processed directory: BPR batches for training, user batches
with seen/relevant masks for validation (train seen) and test (train + val seen).

`fit_on_val=True` trains on train + val (the refit after model selection, `recsys.training.
refit`): the test split and its masks stay the same, and there is nothing to validate on."""

from __future__ import annotations

import warnings
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from recsys.data.evalsets import EvalBatches, EvalSet
from recsys.data.options import BatchOptions
from recsys.data.processed import Interactions, ProcessedData, load_processed
from recsys.data.sampling import (
    BPRGroups,
    NegativeSampler,
    popularity_weights,
    recency_weights,
)
from recsys.errors import RecsysError

# Lightning warns about any IterableDataset with __len__ because worker processes could each
# replay it; ours run in the main process (num_workers=0) and shard per rank themselves.
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


FIELDS = ("users", "items", "timestamps")  # of Interactions

# `batch_size: auto`: the largest power of two that still gives every epoch this many optimizer
# steps, within [AUTO_MIN, AUTO_MAX]. Big batches amortise the per-step cost (optimizer over the
# tables, Python); the step floor keeps small data from converging in too few updates.
AUTO_STEPS_PER_EPOCH = 64
AUTO_MIN, AUTO_MAX = 1024, 65536


def auto_batch_size(triplets_per_epoch: int) -> int:
    """Per-rank batch for `data.batch_size: auto` (see AUTO_STEPS_PER_EPOCH)."""
    target = max(1, triplets_per_epoch // AUTO_STEPS_PER_EPOCH)
    return min(AUTO_MAX, max(AUTO_MIN, 1 << (target.bit_length() - 1)))


def _loader(dataset: Any) -> DataLoader:
    # Datasets yield whole batches as tensor slices: no per-sample __getitem__, no collation,
    # no worker processes (sampling an epoch takes milliseconds; workers would only copy).
    return DataLoader(dataset, batch_size=None, num_workers=0)


class RecsysDataModule(L.LightningDataModule):
    def __init__(
        self,
        processed_dir: str,
        batch_size: int | str = BatchOptions.batch_size,
        num_negatives: int = BatchOptions.num_negatives,
        eval_batch_size: int = BatchOptions.eval_batch_size,
        val_max_users: int | None = BatchOptions.val_max_users,
        seed: int = BatchOptions.seed,
        recency_half_life_days: float | None = BatchOptions.recency_half_life_days,
        negative_popularity_exponent: float = BatchOptions.negative_popularity_exponent,
        fit_on_val: bool = False,
        **preprocess_options: Any,  # the data group's recsys-preprocess settings; unused here
    ) -> None:
        super().__init__()
        if batch_size != "auto" and not (isinstance(batch_size, int) and batch_size >= 1):
            raise RecsysError(
                f"data.batch_size must be 'auto' or an integer >= 1, got {batch_size!r}"
            )
        if eval_batch_size < 1 or num_negatives < 1:
            raise RecsysError("data.eval_batch_size and data.num_negatives must be >= 1")
        if val_max_users is not None and val_max_users < 1:
            raise RecsysError("data.val_max_users must be null (all users) or >= 1")
        if recency_half_life_days is not None and not recency_half_life_days > 0:
            raise RecsysError(
                "data.recency_half_life_days must be null (no weighting) or > 0, got "
                f"{recency_half_life_days}"
            )
        if not negative_popularity_exponent >= 0:
            raise RecsysError(
                "data.negative_popularity_exponent must be >= 0 (0: uniform negatives), got "
                f"{negative_popularity_exponent}"
            )
        self.recency_half_life_days = recency_half_life_days
        self.fit_on_val = bool(fit_on_val)
        self._train_and_val: Interactions | None = None
        self.negative_popularity_exponent = float(negative_popularity_exponent)
        self.processed_dir = str(processed_dir)
        self.batch_size = batch_size
        self.num_negatives = num_negatives
        self.eval_batch_size = eval_batch_size
        self.val_max_users = val_max_users
        self.seed = seed
        self.data: ProcessedData | None = None
        self.sampler: NegativeSampler | None = None
        self.train_pairs: tuple[torch.Tensor, torch.Tensor] | None = None
        self.train_weights: torch.Tensor | None = None
        self.val_set: EvalSet | None = None
        self.test_set: EvalSet | None = None

    # Loaded eagerly by the entry point (it needs n_users/n_items to build the net), so
    # `setup` is idempotent and cheap on every rank.
    def load(self) -> ProcessedData:
        if self.data is None:
            self.data = load_processed(self.processed_dir)
        return self.data

    @property
    def n_users(self) -> int:
        return self.load().n_users

    @property
    def n_items(self) -> int:
        return self.load().n_items

    @property
    def metadata(self) -> dict[str, Any]:
        return self.load().metadata

    def fit_split(self) -> Interactions:
        """What training draws positives from: train, or train + val for a refit."""
        data = self.load()
        if not self.fit_on_val:
            return data.train
        if self._train_and_val is None:  # concatenated once, not per setup / batch-size call
            self._train_and_val = Interactions(
                *(torch.cat([getattr(data.train, f), getattr(data.val, f)]) for f in FIELDS)
            )
        return self._train_and_val

    def setup(self, stage: str | None = None) -> None:
        data = self.load()
        tr = self.fit_split()
        if stage in (None, "fit") and self.sampler is None:
            # Sampling and batching run where the model trains: no batch crosses the bus.
            device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
            self.train_pairs = (tr.users.to(device), tr.items.to(device))
            self.train_weights = (
                None
                if self.recency_half_life_days is None
                else recency_weights(tr.timestamps, self.recency_half_life_days).to(device)
            )
            item_weights = (
                popularity_weights(tr.items, data.n_items, self.negative_popularity_exponent)
                if self.negative_popularity_exponent > 0
                else None
            )
            try:
                self.sampler = NegativeSampler(*self.train_pairs, data.n_items, item_weights)
            except ValueError as err:
                raise RecsysError(str(err), path=data.path / "train.parquet") from err
        if stage in (None, "fit", "validate") and self.val_set is None and not self.fit_on_val:
            self.val_set = EvalSet.for_split(data, "val", self.val_max_users, self.seed)
        if stage in (None, "test") and self.test_set is None:
            # Train + val are seen at test time, refit on them or not.
            self.test_set = EvalSet.for_split(data, "test")

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    @property
    def train_batch_size(self) -> int:
        """Triplets per optimizer step and rank: `batch_size`, with `auto` resolved."""
        if self.batch_size != "auto":
            return int(self.batch_size)
        world = self._rank_world()[1]
        return auto_batch_size(len(self.fit_split()) * self.num_negatives // world)

    def train_dataloader(self) -> DataLoader:
        assert self.sampler is not None and self.train_pairs is not None
        rank, world = self._rank_world()
        return _loader(
            BPRGroups(
                *self.train_pairs,
                self.sampler,
                self.train_batch_size,
                self.num_negatives,
                seed=self.seed,
                rank=rank,
                world_size=world,
                epoch=self._current_epoch,
                weights=self.train_weights,
            )
        )

    def _current_epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def _eval_loader(self, evalset: EvalSet | None, split: str) -> DataLoader:
        if evalset is None or evalset.users.numel() == 0:
            raise RecsysError(
                f"the {split} split has no users to evaluate (all its rows were cold or it is "
                "empty); preprocess with a larger fraction for it",
                path=self.processed_dir,
            )
        rank, world = self._rank_world()
        return _loader(EvalBatches(evalset, self.eval_batch_size, rank, world))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set, "val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set, "test")
