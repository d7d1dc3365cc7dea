"""Vectorized BPR batches: users and rows of (positive, negatives) as tensor slices.

Negatives are drawn from the items a user has not interacted with in train, uniformly or by
train popularity (`popularity_weights`), by vectorized rejection: draw for everyone, redraw
only the rejected, until none are left.
Everything runs on the device the interactions live on: on a GPU, batches never cross the bus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import IterableDataset

# Rejection rounds before the few remaining (very dense) users are drawn exactly.
MAX_REJECTION_ROUNDS = 32
# Triplets (negatives) sampled at once: bounds memory on big data, keeps per-call overhead
# negligible.
CHUNK_TRIPLETS = 1 << 20


def popularity_weights(items: torch.Tensor, n_items: int, exponent: float) -> torch.Tensor:
    """Each item's train count to the power `exponent` (counts below 1 count as 1, so every
    item can be drawn): 0 is uniform, 1 the distribution of positives (what in-batch negatives
    draw from), 0.75 word2vec's choice in between."""
    if exponent < 0:
        raise ValueError(f"the popularity exponent must be >= 0, got {exponent}")
    counts = torch.bincount(items.long(), minlength=n_items).double().clamp_min(1.0)
    return counts.pow(exponent)


class NegativeSampler:
    """Membership of (user, item) in train via a sorted key array (searchsorted, no hashing).

    `weights` (one per item; uniform when None) makes draws proportional to them;
    `log_q_ratio` is then log(n_items * q(item)), the correction sampled softmax needs."""

    def __init__(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        n_items: int,
        weights: torch.Tensor | None = None,
    ) -> None:
        self.n_items = int(n_items)
        self.cdf = self.log_q_ratio = None
        if weights is not None:
            if weights.shape != (self.n_items,) or not bool((weights > 0).all()):
                raise ValueError("item weights must be positive, one per item")
            q = weights.double() / weights.double().sum()
            # Inverse-CDF draws: unlike torch.multinomial, any catalogue size, and a stream
            # that a torch.Generator reproduces on CPU and GPU alike.
            self.cdf = torch.cumsum(q, 0).to(users.device)
            self.log_q_ratio = torch.log(q * self.n_items).float().to(users.device)
        self.keys = torch.unique(users.long() * self.n_items + items.long())  # sorted
        degree = torch.bincount(self.keys // self.n_items)  # distinct items: rows may repeat
        if degree.numel() and int(degree.max()) >= self.n_items:
            user = int(torch.argmax(degree))
            raise ValueError(
                f"user {user} interacted with every one of the {self.n_items} items in train: "
                "no negative item exists to sample"
            )

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users.long() * self.n_items + items.long()
        pos = torch.searchsorted(self.keys, keys).clamp_(max=max(0, self.keys.numel() - 1))
        return self.keys[pos] == keys if self.keys.numel() else torch.zeros_like(keys, dtype=bool)

    def _draw(self, shape: torch.Size, generator: torch.Generator, device) -> torch.Tensor:
        if self.cdf is None:
            return torch.randint(self.n_items, shape, generator=generator, device=device)
        u = torch.rand(shape, generator=generator, device=device, dtype=torch.float64)
        return torch.searchsorted(self.cdf, u).clamp_(max=self.n_items - 1)

    def sample(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One negative per entry of `users` (uniform, or by the sampler's weights)."""
        device = users.device
        items = self._draw(users.shape, generator, device)
        todo = torch.nonzero(self.is_positive(users, items)).squeeze(1)
        for _ in range(MAX_REJECTION_ROUNDS):
            if todo.numel() == 0:
                return items
            redraw = self._draw(todo.shape, generator, device)
            items[todo] = redraw
            todo = todo[self.is_positive(users[todo], redraw)]
        for idx in todo.tolist():  # a handful of users who saw most of the catalogue
            items[idx] = self._exact(int(users[idx]), generator)
        return items

    def _exact(self, user: int, generator: torch.Generator) -> int:
        keys = self.keys
        bounds = torch.tensor([user, user + 1], device=keys.device) * self.n_items
        lo, hi = torch.searchsorted(keys, bounds).tolist()
        seen = torch.zeros(self.n_items, dtype=torch.bool, device=keys.device)
        seen[keys[lo:hi] - user * self.n_items] = True
        free = torch.nonzero(~seen).squeeze(1)
        if self.cdf is not None:  # by weight among the free items (q from the CDF's steps)
            q = torch.diff(self.cdf, prepend=self.cdf.new_zeros(1))[free]
            return int(free[torch.multinomial(q.float(), 1, generator=generator)])
        pick = torch.randint(free.numel(), (1,), generator=generator, device=keys.device)
        return int(free[pick])


def recency_weights(timestamps: torch.Tensor, half_life_days: float) -> torch.Tensor:
    """Weight of each train interaction: 1 for the newest, halving every `half_life_days`
    before it. Under a global temporal split the test period follows train, so recent
    behaviour predicts it best."""
    if half_life_days <= 0:
        raise ValueError(f"the half-life must be > 0 days, got {half_life_days}")
    age_days = (timestamps.max() - timestamps).double() / 86_400_000.0
    return torch.exp2(-age_days / half_life_days).float().clamp_min(1e-30)


class BPRGroups(IterableDataset):
    """One epoch of BPR batches for one rank: users [P] and items [P, 1 + num_negatives]
    (int64), each row a train interaction's item followed by fresh negatives from `sampler`.

    A row holds `num_negatives` BPR triplets (u, i, j) that share u and i, so the net computes
    the user's and the positive's side once per row instead of once per triplet.
    `batch_size` counts triplets: a batch has batch_size // num_negatives rows (at least one).
    The permutation depends on (seed, epoch) only, so ranks split the same order into
    disjoint, equal-sized shards (equal sizes keep DDP ranks in lockstep), and a resumed run
    replays the epoch it was killed in.
    """

    def __init__(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        sampler: NegativeSampler,
        batch_size: int,
        num_negatives: int = 1,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch: Callable[[], int] = lambda: 0,
        weights: torch.Tensor | None = None,
    ) -> None:
        if batch_size < 1 or num_negatives < 1:
            raise ValueError("batch_size and num_negatives must be at least 1")
        self.users, self.items = users.long(), items.long()
        # Sampling weights of the train interactions (recency): an epoch then draws as many
        # positives as there are interactions, with replacement, by weight (inverse CDF, which,
        # unlike torch.multinomial, takes any number of interactions).
        self.cdf = None
        if weights is not None:
            if weights.shape != self.users.shape or not bool((weights > 0).all()):
                raise ValueError("weights must be positive, one per train interaction")
            cdf = torch.cumsum(weights.double(), 0)
            self.cdf = (cdf / cdf[-1]).to(self.users.device)
        self.sampler = sampler
        self.num_negatives = num_negatives
        self.rows_per_batch = max(1, batch_size // num_negatives)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = epoch

    def shard_rows(self) -> int:
        return self.users.numel() // self.world_size

    def shard_size(self) -> int:
        """Triplets per epoch on this rank."""
        return self.shard_rows() * self.num_negatives

    def __len__(self) -> int:
        return -(-self.shard_rows() // self.rows_per_batch)

    def _shard(self, epoch: int) -> torch.Tensor:
        device = self.users.device
        g = torch.Generator(device).manual_seed(self.seed * 1_000_003 + epoch)
        n = self.users.numel()
        if self.cdf is None:
            order = torch.randperm(n, generator=g, device=device)
        else:
            u = torch.rand(n, generator=g, device=device, dtype=torch.float64)
            order = torch.searchsorted(self.cdf, u).clamp_(max=n - 1)
        per_rank = self.shard_rows()
        return order[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch()
        shard = self._shard(epoch)
        g = torch.Generator(shard.device)
        g.manual_seed((self.seed * 1_000_003 + epoch) * 65_537 + self.rank)
        k, per_batch = self.num_negatives, self.rows_per_batch
        chunk = max(per_batch, CHUNK_TRIPLETS // k // per_batch * per_batch)
        for lo in range(0, shard.numel(), chunk):
            idx = shard[lo : lo + chunk]
            users = self.users[idx]
            neg = self.sampler.sample(users.repeat_interleave(k), g).view(-1, k)
            items = torch.cat([self.items[idx, None], neg], dim=1)
            for b in range(0, idx.numel(), per_batch):
                yield users[b : b + per_batch], items[b : b + per_batch]
