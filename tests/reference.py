"""An independent, deliberately naive implementation of docs/REFERENCE.md, Input and
Processed directory, in plain Python.

Tests compare recsys-preprocess against it: dicts and loops, no polars, no numpy.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter, defaultdict

SCHEMAS = {
    "user_id": ("user_id", ("parent_asin", "asin"), "timestamp", 1, "rating"),
    "reviewerID": ("reviewerID", ("asin",), "unixReviewTime", 1000, "overall"),
}


def _num(v):
    return isinstance(v, int | float) and not isinstance(v, bool)


def _fits_float32(v):
    try:
        return abs(float(v)) <= 3.4028234663852886e38
    except OverflowError:
        return False


def parse(lines: list[bytes], user_key: str):
    """(rows in file order, Counter of skip reasons)."""
    ukey, item_keys, tkey, scale, rkey = SCHEMAS[user_key]
    rows, bad = [], Counter()
    for raw in lines:
        if not raw.strip(b" \t\r\n"):  # JSON whitespace only
            bad["blank_line"] += 1
            continue
        try:  # no NaN/Infinity; a duplicate key keeps its first value
            obj = json.loads(
                raw,
                parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)),
                object_pairs_hook=lambda pairs: {k: v for k, v in reversed(pairs)},
            )
        except (ValueError, RecursionError):
            bad["not_json"] += 1
            continue
        if not isinstance(obj, dict):
            bad["not_object"] += 1
            continue
        user = obj.get(ukey)
        if user is None or user == "":
            bad["missing_user"] += 1
            continue
        if not isinstance(user, str):
            bad["bad_user_type"] += 1
            continue
        item = next((obj[k] for k in item_keys if isinstance(obj.get(k), str) and obj[k]), None)
        if item is None:
            wrong = any(
                obj.get(k) is not None and not isinstance(obj.get(k), str) for k in item_keys
            )
            bad["bad_item_type" if wrong else "missing_item"] += 1
            continue
        if not all(
            s.encode("utf-8", "surrogatepass").decode("utf-8", "ignore") == s for s in (user, item)
        ):
            bad["not_json"] += 1  # unpaired surrogate: not storable text
            continue
        ts = obj.get(tkey)
        if ts is None:
            bad["missing_timestamp"] += 1
            continue
        if not _num(ts) or math.isinf(ts) or math.isnan(ts):
            bad["bad_timestamp"] += 1
            continue
        ts = ts * scale if isinstance(ts, int) else int(ts * scale)
        if abs(ts) > 2**63 - 1:
            bad["bad_timestamp"] += 1
            continue
        rating = obj.get(rkey)
        if rating is not None and not (_num(rating) and _fits_float32(rating)):
            bad["bad_rating"] += 1
            continue
        rows.append((user, item, ts, None if rating is None else float(rating)))
    return rows, bad


def dedupe(rows):
    best = {}
    for pos, (u, i, t, r) in enumerate(rows):
        key = (u, i)
        if key not in best or (t, pos) < (best[key][2], best[key][4]):
            best[key] = (u, i, t, r, pos)
    return [row[:4] for row in sorted(best.values(), key=lambda row: row[4])]


def kcore(rows, k):
    while True:
        users = Counter(r[0] for r in rows)
        items = Counter(r[1] for r in rows)
        kept = [r for r in rows if users[r[0]] >= k and items[r[1]] >= k]
        if len(kept) == len(rows):
            return kept
        rows = kept


class Unsplittable(ValueError):
    """The data cannot be split as asked (recsys refuses these inputs with a message)."""


def temporal_split(rows, val_fraction, test_fraction):
    ts = sorted(r[2] for r in rows)
    n = len(ts)
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    if n_test + n_val >= n:
        raise Unsplittable("too few interactions")
    test_start, val_start = ts[n - n_test], ts[n - n_test - n_val]
    if val_start in (ts[0], test_start):
        raise Unsplittable("timestamps too coarse")
    train = [r for r in rows if r[2] < val_start]
    val = [r for r in rows if val_start <= r[2] < test_start]
    test = [r for r in rows if r[2] >= test_start]
    return train, val, test


def leave_last_out(rows):
    by_user = defaultdict(list)
    for r in rows:
        by_user[r[0]].append(r)
    train, val, test = [], [], []
    for _user, user_rows in by_user.items():
        user_rows.sort(key=lambda r: (r[2], r[1]))
        if len(user_rows) >= 2:
            test.append(user_rows.pop())
        if len(user_rows) >= 2:
            val.append(user_rows.pop())
        train.extend(user_rows)
    return train, val, test


def process(lines, user_key="user_id", k=5, split="temporal", val_fraction=0.1, test_fraction=0.1):
    """Everything the processed directory holds, as plain Python values."""
    rows, bad = parse(lines, user_key)
    unique = dedupe(rows)
    core = kcore(unique, k)
    if not core:
        raise Unsplittable("empty k-core")
    if split == "temporal":
        train, val, test = temporal_split(core, val_fraction, test_fraction)
    else:
        train, val, test = leave_last_out(core)
    train_users = {r[0] for r in train}
    train_items = {r[1] for r in train}

    def warm(part):
        return [r for r in part if r[0] in train_users and r[1] in train_items]

    warm_val, warm_test = warm(val), warm(test)
    users = sorted({r[0] for r in core})
    items = sorted({r[1] for r in core})
    uidx = {u: n for n, u in enumerate(users)}
    iidx = {i: n for n, i in enumerate(items)}

    def f32(r):
        return None if r is None else struct.unpack("f", struct.pack("f", r))[0]

    def table(part):
        return sorted((uidx[u], iidx[i], t, f32(r)) for u, i, t, r in part)

    return {
        "train": table(train),
        "val": table(warm_val),
        "test": table(warm_test),
        "users": users,
        "items": items,
        "invalid": bad,
        "duplicate": len(rows) - len(unique),
        "kcore": len(unique) - len(core),
        "cold": len(val) - len(warm_val) + len(test) - len(warm_test),
    }
