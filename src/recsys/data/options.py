"""Preprocessing options: plain stdlib types, so configs can import them without polars."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from recsys.errors import RecsysError

DAY_MS = 86_400_000


class SplitKind(StrEnum):
    """Member names equal their values: OmegaConf matches enum overrides by name."""

    temporal = "temporal"
    leave_last_out = "leave_last_out"


class EventType(StrEnum):
    """The event types of the service's feedback log (POST /feedback)."""

    impression = "impression"
    click = "click"
    purchase = "purchase"


@dataclass(frozen=True)
class PrepareOptions:
    """recsys-preprocess's `data.*` settings; their defaults are the ones the config uses."""

    # Iterative k-core: every kept user and item has at least this many interactions.
    min_interactions: int = 5
    # temporal: global time boundaries (leak-free, default); leave_last_out: per-user last
    # item (leaky).
    split: SplitKind = SplitKind.temporal
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    # A processed directory whose temporal boundaries (val_start, test_start) to reuse instead
    # of the fractions: a new dataset (more reviews, or feedback) tested on the same period
    # as an older model's, so the two are compared on equal terms (recsys-promote).
    split_from: str | None = None
    # The feedback events that become interactions: choices, not impressions (an impression
    # says an item was shown, not that the user wanted it).
    feedback_events: tuple[EventType, ...] = (EventType.click, EventType.purchase)

    def validate(self) -> None:
        if self.min_interactions < 1:
            raise RecsysError(f"data.min_interactions must be >= 1, got {self.min_interactions}")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise RecsysError(f"data.{name} must be between 0 and 1 (exclusive), got {value}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise RecsysError(
                "data.val_fraction + data.test_fraction must be below 1, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        names = ", ".join(EventType)
        if self.split_from is not None and self.split != SplitKind.temporal:
            raise RecsysError(
                "data.split_from reuses temporal boundaries: it needs data.split=temporal"
            )
        if not self.feedback_events:
            raise RecsysError(f"data.feedback_events must name at least one of {names}")
        unknown = [str(e) for e in self.feedback_events if e not in set(EventType)]
        if unknown:
            raise RecsysError(f"data.feedback_events: unknown {unknown}; choose among {names}")


@dataclass(frozen=True)
class BatchOptions:
    """How recsys-train's LightningDataModule draws batches (`data.*`); the defaults of the
    config and of `RecsysDataModule` alike."""

    # Triplets per optimizer step (each DDP rank takes this many): an integer, or "auto"
    # (a power of two sized to the train split: >= 64 steps an epoch, within 1024..65536).
    # A batch holds batch_size // num_negatives train interactions with their negatives.
    # The model's learning rate is scaled with it (model.lr_scaling).
    batch_size: int | str = "auto"
    # Negatives per train interaction and epoch (each makes one triplet; the net computes the
    # user and the positive once for all of them). With the softmax loss more negatives keep
    # helping: NeuMF on the demo data tested at 0.0840 / 0.0895 / 0.0917 / 0.0926 with 4 / 8 /
    # 16 / 32 (benchmarks/results/defaults_negatives*.json, docs/MODEL_DEFAULTS.md).
    num_negatives: int = 16
    # Users per full-ranking evaluation batch.
    eval_batch_size: int = 1024
    # Validate on a fixed, seeded sample of this many val users (all when fewer; None: all).
    # On the demo data it picked the same best epoch and test NDCG@10 as all 9,197 users,
    # 26% sooner.
    val_max_users: int | None = 4096
    seed: int = 0
    # Draw each epoch's train positives by recency, the weight halving every this many days
    # before the newest train interaction (with replacement, as many as there are
    # interactions); None: every interaction once per epoch.
    recency_half_life_days: float | None = None
    # Draw negatives in proportion to their train count to this power: 0 uniform, 1 the
    # distribution of positives, 0.75 word2vec's middle. The softmax loss corrects popularity
    # draws by log-Q, so they stay an estimate of the full softmax.
    negative_popularity_exponent: float = 0.0


@dataclass
class SyntheticSpec:
    """Knobs of the synthetic review generator (see recsys.data.synthetic)."""

    # Size and randomness.
    n_users: int = 20_000
    n_items: int = 5_000
    n_interactions: int = 300_000
    seed: int = 42
    # The choice model: latent factors, a softmax over sampled candidates, popularity.
    dim: int = 16
    affinity_temperature: float = 0.25
    candidates: int = 64
    popularity_exponent: float = 0.7
    activity_exponent: float = 1.6
    # Time: recent releases, re-reviews, catalogue growth, the period covered.
    recent_share: float = 0.3
    recent_days: int = 180
    duplicate_rate: float = 0.03
    catalog_at_start: float = 0.3
    start_date: str = "2018-01-01"
    end_date: str = "2023-09-01"

    def validate(self) -> None:
        for name in ("n_users", "n_items", "n_interactions", "dim", "candidates"):
            if getattr(self, name) < 1:
                raise RecsysError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("duplicate_rate", "catalog_at_start", "recent_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise RecsysError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.seed < 0:
            raise RecsysError(f"seed must be >= 0, got {self.seed}")
        for name in ("affinity_temperature", "activity_exponent"):
            if getattr(self, name) <= 0:
                raise RecsysError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("popularity_exponent", "recent_days"):
            if getattr(self, name) < 0:
                raise RecsysError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.start_ms >= self.end_ms - 90 * DAY_MS:
            raise RecsysError("end_date must be at least 90 days after start_date")

    @staticmethod
    def _date_ms(text: str) -> int:
        try:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        except ValueError as err:
            raise RecsysError(f"dates must look like 2018-01-01, got '{text}'") from err
        return int(day.timestamp() * 1000)

    @property
    def start_ms(self) -> int:
        return self._date_ms(self.start_date)

    @property
    def end_ms(self) -> int:
        return self._date_ms(self.end_date)
