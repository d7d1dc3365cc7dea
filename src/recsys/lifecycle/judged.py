"""The test interactions two models may fairly be judged on: only those after both of them
stopped training.

A model trained on other data may have fit on part of another split's test period: a
processed directory with more interactions (new clicks, say) puts its temporal test boundary
earlier, inside the older model's train + val weeks. Judged there, the older model would be
scored on interactions it was trained on. So test interactions before the latest training end
are masked for both models (like train and val) and only the later ones count.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from recsys.data.evalsets import EvalSet
from recsys.data.processed import ProcessedData, read_metadata
from recsys.errors import RecsysError


def trained_until(processed_dir: str | None) -> int | None:
    """The end (ms, exclusive) of what a run on `processed_dir` could have trained on: its test
    boundary, as the refit fits train + val. None when the directory is not at hand or its
    split has no global boundary (leave_last_out)."""
    if not processed_dir:
        return None
    try:
        split = read_metadata(processed_dir).get("split", {})
    except RecsysError:  # moved or deleted: the caller reports the model as unchecked
        return None
    return int(split["test_start"]) if split.get("kind") == "temporal" else None


def judged_test_set(
    data: ProcessedData, until: dict[str, int | None]
) -> tuple[EvalSet, dict[str, Any]]:
    """The test EvalSet restricted to interactions at or after every model's training end
    (`until`: by model name; None = unknown), earlier test interactions masked; and what was
    done, for the report."""
    split = data.metadata.get("split", {})
    if split.get("kind") != "temporal":
        return EvalSet.for_split(data, "test"), {"test_from": None}
    known = [u for u in until.values() if u is not None]
    cutoff = max([int(split["test_start"]), *known])
    test = data.test
    late = test.timestamps >= cutoff
    report = {
        "test_from": _iso(cutoff),
        "test_rows_masked": int((~late).sum()),
        "unchecked": sorted(name for name, u in until.items() if u is None),
    }
    if not bool(late.any()):
        latest = max(until, key=lambda name: until[name] or 0)
        raise RecsysError(
            f"{latest} was trained on interactions up to {_iso(cutoff)}, after the whole test "
            f"period of '{data.path}' (from {_iso(int(split['test_start']))}): judge it on a "
            "later split (data.processed_dir=DIR)"
        )
    seen = [
        (data.train.users, data.train.items),
        (data.val.users, data.val.items),
        (test.users[~late], test.items[~late]),
    ]
    return EvalSet.build(seen, (test.users[late], test.items[late]), data.n_users), report


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
