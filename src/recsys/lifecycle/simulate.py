"""Simulated users for `make loop`: they ask the served model for recommendations, look at
them, and click and buy by the synthetic data's hidden preferences, through the real HTTP API
(`/recommend_batch`, then `/feedback`).

The click model: a shown item is clicked with probability sigmoid(SHARPNESS * (a - THRESHOLD)),
a = user.item in the generator's latent space (unit variance over random pairs), so a model
that recommends what users truly like earns more clicks; a click becomes a purchase with
probability PURCHASE_RATE.

When the events happen matters to what they teach. By default they are stamped over the 14
days after the reviews end, so a temporal split makes them the test period: a test set made of
the serving model's own recommendations, on which that model is hard to beat (exposure bias).
`--during-val-of DIR` stamps them inside that processed directory's validation period
instead, as if the champion had served the weeks before the test period: the next test split
then holds only later, organic reviews, on which the champion and a challenger trained on the
clicks are judged fairly (`make loop` does this).

Usage: python -m recsys.lifecycle.simulate --model recsys:TAG --feedback-dir DIR [--users N]
(serves the model with `bentoml serve` on a free loopback port for the duration), or
--url http://host:3000 for a server that is already running.
"""

from __future__ import annotations

import argparse
import json
import socket
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from recsys.data.options import DAY_MS, SyntheticSpec
from recsys.data.processed import read_metadata
from recsys.data.synthetic import World, build_world

# About one click per five impressions of a trained NeuMF's top 10 on the demo data (19.6%).
SHARPNESS = 3.0
THRESHOLD = 2.5
PURCHASE_RATE = 0.3
USERS_PER_CALL = 100
EVENTS_PER_CALL = 1000


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def page_events(
    world: World,
    item_of: dict[str, int],
    user: int,
    result: dict[str, Any],
    rng: np.random.Generator,
    when_ms: int,
) -> list[dict[str, Any]]:
    """Impressions of every item shown to `user`, then their clicks and purchases."""
    shown = [item["item_id"] for item in result["items"]]
    known = [item_of.get(i, -1) for i in shown]
    affinity = np.array(
        [world.user_factors[user] @ world.item_factors[i] if i >= 0 else -np.inf for i in known]
    )
    clicked = rng.random(len(shown)) < 1.0 / (1.0 + np.exp(-SHARPNESS * (affinity - THRESHOLD)))
    bought = clicked & (rng.random(len(shown)) < PURCHASE_RATE)
    common = {
        "user_id": result["user_id"],
        "request_id": result.get("request_id"),
        "model_version": result.get("model_version"),
    }
    events = []
    for kind, mask in (("impression", None), ("click", clicked), ("purchase", bought)):
        for n, item_id in enumerate(shown):
            if mask is None or mask[n]:
                at = when_ms + (0 if kind == "impression" else 1000 * (1 + n))
                events.append({"type": kind, "item_id": item_id, "timestamp": at, **common})
    return [{k: v for k, v in e.items() if v is not None} for e in events]


def simulate(
    base_url: str,
    spec: SyntheticSpec,
    n_users: int = 5000,
    k: int = 10,
    window_ms: tuple[int, int] | None = None,
    seed: int = 0,
    clients: int = 4,
    send: Callable[[str, dict[str, Any]], dict[str, Any]] = post,
) -> dict[str, Any]:
    """Show `n_users` random users of the generator their top-k and post what they do, stamped
    within `window_ms` (default: the 14 days after the reviews end); returns counts of the
    events the service accepted. `send(url, body)` posts JSON (tests pass an in-process
    client)."""
    world = build_world(spec)
    item_of = {item_id: n for n, item_id in enumerate(world.item_ids.tolist())}
    rng = np.random.default_rng(seed)
    users = rng.choice(len(world.user_ids), size=min(n_users, len(world.user_ids)), replace=False)
    start, stop = window_ms or (spec.end_ms, spec.end_ms + 14 * DAY_MS)
    batches = [users[lo : lo + USERS_PER_CALL] for lo in range(0, len(users), USERS_PER_CALL)]

    def run(index: int) -> Counter:
        batch = batches[index]
        local = np.random.default_rng([seed, index])
        ids = world.user_ids[batch].tolist()
        answer = send(f"{base_url}/recommend_batch", {"user_ids": ids, "k": k})
        events = []
        for user, result in zip(batch.tolist(), answer["results"], strict=True):
            when = int(local.integers(start, stop - (k + 1) * 1000))  # clicks follow by k s
            events += page_events(world, item_of, user, result, local, when)
        counts = Counter(e["type"] for e in events)
        for lo in range(0, len(events), EVENTS_PER_CALL):
            chunk = events[lo : lo + EVENTS_PER_CALL]
            accepted = send(f"{base_url}/feedback", {"events": chunk})["accepted"]
            if accepted != len(chunk):
                raise RuntimeError(f"/feedback accepted {accepted} of {len(chunk)} events")
        counts["users"] = len(batch)
        counts["fallback"] = sum(r.get("fallback") is not None for r in answer["results"])
        return counts

    total: Counter = Counter()
    with ThreadPoolExecutor(clients) as pool:
        for counts in pool.map(run, range(len(batches))):
            total.update(counts)
    out: dict[str, Any] = {
        name: int(total[name]) for name in ("users", "fallback", "impression", "click", "purchase")
    }
    out["click_through_rate"] = round(out["click"] / max(1, out["impression"]), 4)
    return out


def val_period(processed_dir: str) -> tuple[int, int]:
    """[val_start, test_start) of a processed directory's temporal split, in ms."""
    split = read_metadata(processed_dir)["split"]
    if split.get("kind") != "temporal":
        raise SystemExit(f"--during-val-of needs a temporal split, '{processed_dir}' has none")
    return int(split["val_start"]), int(split["test_start"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running service, e.g. http://127.0.0.1:3000")
    where.add_argument("--model", help="serve this BentoML tag for the simulation")
    parser.add_argument("--feedback-dir", help="RECSYS_FEEDBACK_DIR of the served model")
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--during-val-of",
        metavar="PROCESSED_DIR",
        help="stamp the events within this processed directory's validation period",
    )
    parser.add_argument("--seed", type=int, default=0)
    # The generator's settings: the defaults are recsys-generate's (make demo's data).
    parser.add_argument("--gen-n-users", type=int, default=SyntheticSpec.n_users)
    parser.add_argument("--gen-n-items", type=int, default=SyntheticSpec.n_items)
    parser.add_argument("--gen-n-interactions", type=int, default=SyntheticSpec.n_interactions)
    parser.add_argument("--gen-seed", type=int, default=SyntheticSpec.seed)
    args = parser.parse_args(argv)
    spec = SyntheticSpec(
        n_users=args.gen_n_users,
        n_items=args.gen_n_items,
        n_interactions=args.gen_n_interactions,
        seed=args.gen_seed,
    )
    options = {
        "n_users": args.users,
        "k": args.k,
        "window_ms": None if args.during_val_of is None else val_period(args.during_val_of),
        "seed": args.seed,
    }
    if args.url:
        result = simulate(args.url.rstrip("/"), spec, **options)
    else:
        from recsys.serving.local import bentoml_serve

        if not args.feedback_dir:
            parser.error("--model needs --feedback-dir (where the service writes the events)")
        env = {"RECSYS_MODEL": args.model, "RECSYS_FEEDBACK_DIR": args.feedback_dir}
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        log = Path(args.feedback_dir).resolve().with_name("serve.log")  # beside the events
        log.parent.mkdir(parents=True, exist_ok=True)
        with bentoml_serve(_free_port(), env, log) as base:
            result = simulate(base, spec, **options)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
