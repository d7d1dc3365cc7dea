"""Synthetic reviews in the Amazon Reviews 2023 schema, with structure a recommender can learn.

The generative story, per review: a user (power-law activity) picks a time after joining;
candidates are drawn by item popularity (power law) among items already released, part of
them among recent releases; the user picks the candidate with the best latent affinity
(Gumbel-max over user.item / temperature), and rates it by that affinity. A few percent of
reviews are repeats of an earlier (user, item) pair. Everything is vectorised numpy, drawn in
chunks from one seed, so output is deterministic and memory stays flat however many rows.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data.io import atomic_file
from recsys.data.options import DAY_MS, SyntheticSpec
from recsys.errors import RecsysError

CHUNK = 100_000
AFFINITY_BATCH = 8_192
ID_ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", dtype=np.uint8)
# Key order of an Amazon Reviews 2023 line.
REVIEW_FIELDS = (
    "rating", "title", "text", "images", "asin", "parent_asin", "user_id", "timestamp",
    "helpful_vote", "verified_purchase",
)  # fmt: skip
WORDS = (
    "the a and it is this for to i my of with was but not very so on in product quality "
    "great good love works well price fit size easy use bought would recommend again just "
    "like nice perfect little small too bit after one time months weeks still used daily "
    "arrived quickly packaging box color looks exactly described cheap sturdy broke returned "
    "disappointed happy excellent value money better than expected comfortable soft material "
    "battery charge lasts long cable sound screen light heavy design simple instructions "
    "clear setup minutes kids gift husband wife loves daughter son bag fits perfectly "
    "smell taste fresh strong works fine okay average poor cheaply made worth every penny "
    "five stars highly definitely will buy more"
).split()


@dataclass
class World:
    """The hidden truth behind the reviews; tests use it to check the data is learnable."""

    user_factors: np.ndarray  # (n_users, dim) float32
    item_factors: np.ndarray  # (n_items, dim) float32, items in release order
    item_cdf: np.ndarray  # cumulative popularity weight, release order
    cdf_guide: np.ndarray  # see _guide_table
    item_release_ms: np.ndarray  # sorted ascending
    user_join_ms: np.ndarray
    user_counts: np.ndarray  # reviews per user, before repeats
    user_ids: np.ndarray  # str
    item_ids: np.ndarray  # str (parent_asin), release order
    variant_ids: np.ndarray  # (n_items, 2) str: extra asins of multi-variant items


def _random_ids(rng: np.random.Generator, n: int, prefix: str, length: int) -> np.ndarray:
    """n distinct ids like Amazon's (uppercase alphanumerics after a fixed prefix)."""
    ids = np.empty(0, dtype=f"<U{len(prefix) + length}")
    while len(ids) < n:
        codes = rng.integers(0, len(ID_ALPHABET), size=(n - len(ids), length))
        raw = ID_ALPHABET[codes].view(f"S{length}").ravel().astype(f"U{length}")
        ids = np.unique(np.concatenate([ids, np.char.add(prefix, raw)]))
    return rng.permutation(ids)[:n]


def _capped_counts(
    rng: np.random.Generator, total: int, activity: np.ndarray, cap: int
) -> np.ndarray:
    """Reviews per user, power-law but at most `cap` each (a user cannot review more distinct
    items than exist); what a capped user loses goes to the others, so the total holds."""
    counts = np.zeros(len(activity), dtype=np.int64)
    for _ in range(50):
        room = counts < cap
        missing = total - int(counts.sum())
        if missing == 0 or not room.any():
            break
        weight = np.where(room, activity, 0.0)
        counts += rng.multinomial(missing, weight / weight.sum())
        counts = np.minimum(counts, cap)
    return counts


def build_world(spec: SyntheticSpec) -> World:
    rng = np.random.default_rng([spec.seed, 0])
    start, end = spec.start_ms, spec.end_ms
    scale = spec.dim**-0.25  # user.item then has unit variance
    users = rng.normal(0.0, scale, (spec.n_users, spec.dim)).astype(np.float32)
    items = rng.normal(0.0, scale, (spec.n_items, spec.dim)).astype(np.float32)

    # Zipf popularity over a random ranking of the items.
    ranks = rng.permutation(spec.n_items) + 1
    weight = ranks.astype(np.float64) ** -spec.popularity_exponent
    at_start = rng.random(spec.n_items) < spec.catalog_at_start
    release = np.where(
        at_start,
        start - rng.integers(0, 365 * DAY_MS, spec.n_items),
        rng.integers(start, end - 30 * DAY_MS, spec.n_items),
    )
    order = np.argsort(release, kind="stable")

    activity = rng.pareto(spec.activity_exponent, spec.n_users) + 1.0
    n_base = spec.n_interactions - round(spec.n_interactions * spec.duplicate_rate)
    counts = _capped_counts(rng, n_base, activity, cap=max(1, spec.n_items // 5))
    join = rng.integers(start, end - 60 * DAY_MS, spec.n_users)
    item_ids = _random_ids(rng, spec.n_items * 3, "B0", 8)
    return World(
        user_factors=users,
        item_factors=items[order],
        item_cdf=np.cumsum(weight[order]),
        cdf_guide=_guide_table(np.cumsum(weight[order])),
        item_release_ms=release[order],
        user_join_ms=join,
        user_counts=counts,
        user_ids=_random_ids(rng, spec.n_users, "A", 27),
        item_ids=item_ids[: spec.n_items],
        variant_ids=item_ids[spec.n_items :].reshape(spec.n_items, 2),
    )


def _draw_candidates(
    world: World, spec: SyntheticSpec, rng: np.random.Generator, t: np.ndarray
) -> np.ndarray:
    """(len(t), candidates) items, popularity-weighted among items released by time t.

    Items are stored in release order, so 'released by t' is a prefix of the popularity CDF
    and 'recent' a window of it: inverse-CDF sampling needs no per-row loop.
    """
    cdf = world.item_cdf
    released = np.searchsorted(world.item_release_ms, t, side="right")  # >= 1: catalog exists
    recent_from = np.searchsorted(world.item_release_ms, t - spec.recent_days * DAY_MS)
    lo_all = np.zeros_like(t, dtype=np.float64)
    hi = cdf[np.maximum(released, 1) - 1]
    lo_recent = np.where(recent_from > 0, cdf[np.maximum(recent_from, 1) - 1], 0.0)
    lo_recent = np.where(recent_from < released, lo_recent, lo_all)  # empty window -> all
    shape = (len(t), spec.candidates)
    recent = rng.random(shape) < spec.recent_share
    lo = np.where(recent, lo_recent[:, None], lo_all[:, None])
    u = lo + rng.random(shape) * (hi[:, None] - lo)
    return np.minimum(_inverse_cdf(cdf, world.cdf_guide, u), np.maximum(released, 1)[:, None] - 1)


GUIDE_PER_ITEM = 16


def _guide_table(cdf: np.ndarray) -> np.ndarray:
    """For each of 16 x len(cdf) equal slices of the total mass, the first index reaching it.

    Sixteen slices per item keep even the power-law tail at one or two items per slice.
    """
    m = GUIDE_PER_ITEM * len(cdf)
    return np.searchsorted(cdf, np.arange(m) * (cdf[-1] / m), side="right")


def _inverse_cdf(cdf: np.ndarray, guide: np.ndarray, u: np.ndarray) -> np.ndarray:
    """First index with cdf > u, via a guide table and a short vectorised forward walk.

    np.searchsorted costs a cache-missing binary search per draw (tens of millions here);
    with the guide table most draws land on their item at once.
    """
    bucket = np.minimum((u * (len(guide) / cdf[-1])).astype(np.int64), len(guide) - 1)
    idx = guide[bucket]
    last = len(cdf) - 1
    while True:
        behind = (cdf[idx] <= u) & (idx < last)
        if not behind.any():
            return idx
        idx += behind


def _affinity(world: World, users: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """user.item for each (row, candidate): one BLAS matmul against the whole catalogue when it
    is small (far faster than gathering candidate vectors), a gather when it is large."""
    n_items = len(world.item_factors)
    if n_items <= 20_000:
        full = world.user_factors[users] @ world.item_factors.T
        return np.take_along_axis(full, cands, axis=1)
    return np.einsum("bd,bmd->bm", world.user_factors[users], world.item_factors[cands])


def _choose(
    world: World,
    spec: SyntheticSpec,
    rng: np.random.Generator,
    users: np.ndarray,
    cands: np.ndarray,
    temperature: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel-max choice among candidates by affinity; returns items and their affinity."""
    chosen = np.empty(len(users), dtype=np.int64)
    affinity = np.empty(len(users), dtype=np.float32)
    batch = max(256, min(8192, (1 << 22) // len(world.item_factors)))
    for lo in range(0, len(users), batch):
        sl = slice(lo, lo + batch)
        scores = _affinity(world, users[sl], cands[sl])
        gumbel = -np.log(-np.log(rng.random(scores.shape, dtype=np.float32) + 1e-12) + 1e-12)
        best = np.argmax(scores / temperature + gumbel, axis=1)
        rows = np.arange(len(best))
        chosen[sl] = cands[sl][rows, best]
        affinity[sl] = scores[rows, best]
    return chosen, affinity


def _text_corpus(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """A long run of words and each word's start offset; reviews are slices of it."""
    words = np.array(WORDS)[rng.integers(0, len(WORDS), 400_000)]
    corpus = " ".join(words.tolist())
    starts = np.concatenate(([0], np.cumsum(np.char.str_len(words) + 1)))
    return corpus, starts


def _slices(
    corpus: str, starts: np.ndarray, rng: np.random.Generator, n_words: np.ndarray
) -> list[str]:
    first = rng.integers(0, len(starts) - n_words.max() - 1, len(n_words))
    begin = starts[first].tolist()
    end = (starts[first + n_words] - 1).tolist()
    return [corpus[b:e] for b, e in zip(begin, end, strict=True)]


def _sample_base(
    world: World, spec: SyntheticSpec, rng: np.random.Generator, users: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (user, item) reviews for whole users: a re-drawn pick replaces a repeat.

    People rarely review the same product twice; deliberate repeats are added afterwards.
    """
    join = world.user_join_ms[users]
    t = join + (rng.random(len(users)) * (spec.end_ms - join)).astype(np.int64)
    items = np.empty(len(users), dtype=np.int64)
    affinity = np.empty(len(users), dtype=np.float32)
    todo = np.arange(len(users))
    for attempt in range(6):
        # A heavy user can exhaust their favourites: each re-draw explores more widely.
        temperature = spec.affinity_temperature * 2.0**attempt
        picked, aff = _choose(
            world, spec, rng, users[todo], _draw_candidates(world, spec, rng, t[todo]), temperature
        )
        items[todo], affinity[todo] = picked, aff
        repeat = (
            pl.DataFrame({"u": users, "i": items})
            .select(~pl.struct("u", "i").is_first_distinct())
            .to_series()
        )
        todo = np.flatnonzero(repeat.to_numpy())
        if len(todo) == 0:
            break
    # What still repeats (very rare) stays: one more repeated review, collapsed by dedupe.
    return users, items, affinity, np.maximum(t, world.item_release_ms[items])


def _chunk_reviews(
    world: World,
    spec: SyntheticSpec,
    rng: np.random.Generator,
    users: np.ndarray,
    n_dup: int,
    corpus: tuple[str, np.ndarray],
) -> pl.DataFrame:
    # Nobody reviews an item before its release: the time moves up to the release if needed.
    users, items, affinity, t = _sample_base(world, spec, rng, users)

    # Repeats: the same pair again later (or the same instant, a double submission).
    src = rng.integers(0, len(users), n_dup)
    later = np.where(rng.random(n_dup) < 0.2, 0, rng.exponential(60 * DAY_MS, n_dup)).astype(
        np.int64
    )
    users = np.concatenate([users, users[src]])
    items = np.concatenate([items, items[src]])
    affinity = np.concatenate([affinity, affinity[src]])
    t = np.concatenate([t, np.minimum(t[src] + later, spec.end_ms)])

    n = len(users)
    noise = rng.normal(0.0, 0.8, n)
    rating = np.clip(np.rint(4.1 + 0.9 * affinity + noise), 1, 5).astype(np.float64)
    variant = rng.choice(3, n, p=[0.7, 0.2, 0.1])
    asin = np.where(
        variant == 0, world.item_ids[items], world.variant_ids[items, np.maximum(variant - 1, 0)]
    )
    text_words = np.clip(rng.lognormal(3.2, 0.9, n), 1, 600).astype(np.int64)
    title_words = np.clip(rng.geometric(0.3, n), 1, 12).astype(np.int64)
    has_image = rng.random(n) < 0.05
    parent = world.item_ids[items]
    image = pl.struct(
        pl.format("https://m.media-amazon.com/images/I/{}_SL256_.jpg", pl.col("parent_asin")).alias(
            "small_image_url"
        ),
        pl.format("https://m.media-amazon.com/images/I/{}_SL800_.jpg", pl.col("parent_asin")).alias(
            "medium_image_url"
        ),
        pl.format(
            "https://m.media-amazon.com/images/I/{}_SL1600_.jpg", pl.col("parent_asin")
        ).alias("large_image_url"),
        pl.lit("IMAGE").alias("attachment_type"),
    )
    frame = pl.DataFrame(
        {
            "rating": rating,
            "title": _slices(*corpus, rng, title_words),
            "text": _slices(*corpus, rng, text_words),
            "asin": asin,
            "parent_asin": parent,
            "user_id": world.user_ids[users],
            "timestamp": t + rng.integers(0, 1000, n) * (t < spec.end_ms),
            "helpful_vote": rng.geometric(0.6, n) - 1,
            "verified_purchase": rng.random(n) < 0.88,
            "_img": has_image,
        }
    )
    frame = frame.with_columns(
        pl.col("title").str.to_titlecase(),
        pl.when(pl.col("_img"))
        .then(pl.concat_list(image))
        .otherwise(pl.concat_list(image).list.head(0))
        .alias("images"),
    )
    order = rng.permutation(n)
    return frame.select(REVIEW_FIELDS)[order]


def iter_review_chunks(spec: SyntheticSpec, world: World | None = None):
    """Yield DataFrames of reviews, CHUNK base reviews at a time, deterministic under seed."""
    spec.validate()
    world = world or build_world(spec)
    rng = np.random.default_rng([spec.seed, 1])
    corpus = _text_corpus(rng)
    # Chunks hold whole users (so repeats can be avoided per user), in random user order.
    user_order = rng.permutation(spec.n_users)
    ends = np.cumsum(world.user_counts[user_order])
    n_base = int(ends[-1])
    first = 0
    while first < spec.n_users:
        done = int(ends[first - 1]) if first else 0
        last = max(int(np.searchsorted(ends, done + CHUNK, side="right")), first + 1)
        chunk_users = user_order[first:last]
        users = np.repeat(chunk_users, world.user_counts[chunk_users])
        # Repeats spread over chunks so that the file has exactly n_interactions lines.
        n_dup = (
            round(int(ends[last - 1]) * spec.n_interactions / n_base)
            - round(done * spec.n_interactions / n_base)
            - len(users)
        )
        first = last
        if len(users):
            yield _chunk_reviews(world, spec, rng, users, n_dup, corpus)


def write_reviews(out: str | os.PathLike[str], spec: SyntheticSpec) -> int:
    """Stream reviews to .jsonl or .jsonl.gz atomically; returns the number of lines."""
    out = Path(out)
    if not (out.name.endswith(".jsonl") or out.name.endswith(".jsonl.gz")):
        raise RecsysError(f"out must end in .jsonl or .jsonl.gz, got '{out}'")
    written = 0
    with atomic_file(out, "wb") as raw:
        sink = (
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3, mtime=0)
            if out.name.endswith(".gz")
            else raw
        )
        try:
            for frame in iter_review_chunks(spec):
                sink.write(frame.write_ndjson().encode())
                written += frame.height
        finally:
            if sink is not raw:
                sink.close()
    return written
