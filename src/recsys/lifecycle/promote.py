"""`recsys-promote`'s job: compare a registered candidate with the current champion on one
test split and move the `champion` alias only when the candidate is better beyond doubt.

The evidence is a paired percentile bootstrap over test users of (candidate - champion) on
the configured metric: both models rank the same users' unseen items, so the per-user
differences cancel most of the between-user variance a comparison of two means would carry.
The candidate wins when the whole interval lies above `margin`.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from recsys.data.processed import ProcessedData, load_processed
from recsys.devices import resolve_device
from recsys.errors import RecsysError
from recsys.evaluation.protocols import evaluate_full
from recsys.evaluation.report import comparison
from recsys.evaluation.uncertainty import per_user
from recsys.lifecycle import registry
from recsys.lifecycle.judged import judged_test_set, trained_until
from recsys.lifecycle.options import CHAMPION, PREVIOUS, GateSettings
from recsys.lifecycle.remap import RemappedNet, bundle_popularity, index_map, same_ids
from recsys.models.base import RecommenderNet
from recsys.models.checkpoint import CheckpointError
from recsys.packaging.bundle import load_bundle, read_info
from recsys.packaging.sources import fetch_registered, ids_in_order

# Decisions, as recorded in the `promotion.decision` tag; exit 0 for all but `refused`.
FIRST = "first"  # there was no champion: the candidate becomes it
PROMOTED = "promoted"
FORCED = "forced"  # force=true promoted a candidate the gate refused
REFUSED = "refused"
ALREADY = "already_champion"


@dataclass(frozen=True)
class Outcome:
    decision: str
    report: dict[str, Any]

    @property
    def promoted(self) -> bool:
        return self.decision in (FIRST, PROMOTED, FORCED)


def promote(model_uri: str, processed_dir: str | None, gate: GateSettings) -> Outcome:
    """Evaluate, decide, and (unless refused) move the aliases; every decision but "already
    the champion" is recorded on the candidate's version."""
    gate.validate()
    name, version = registry.parse_version_uri(model_uri)
    candidate = registry.get_version(name, version)
    champion = registry.version_by_alias(name, CHAMPION)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    base = {
        "candidate": candidate.uri,
        "champion": None if champion is None else champion.uri,
        "metric": gate.metric,
        "margin": gate.margin,
        "forced": gate.force,
        "at": stamp,
    }
    if champion is not None and champion.version == candidate.version:
        return Outcome(ALREADY, {**base, "decision": ALREADY})
    if champion is None and not gate.force:
        previous = registry.version_by_alias(name, PREVIOUS)
        if previous is not None:
            raise RecsysError(
                f"{name} has no @{CHAMPION} but has @{PREVIOUS} ({previous.uri}): the champion "
                "version was deleted or its alias removed, so there is nothing to compare with. "
                f"Set it again (e.g. recsys-promote model_uri={previous.uri} force=true), or "
                "pass force=true to make this candidate the champion"
            )
    with tempfile.TemporaryDirectory(prefix="recsys-promote-") as tmp:
        report = {**base, **evaluate(candidate, champion, processed_dir, gate, Path(tmp))}
    if champion is None:
        decision = FIRST
    elif report["ci_low"] > gate.margin:
        decision = PROMOTED
    else:
        decision = FORCED if gate.force else REFUSED
    report["decision"] = decision
    if decision != REFUSED:
        # Re-read: another promotion may have moved the alias while this one evaluated.
        now = registry.version_by_alias(name, CHAMPION)
        if (now and now.version) != (champion and champion.version):
            raise RecsysError(
                f"@{CHAMPION} moved to {now.uri if now else 'nothing'} while {candidate.uri} was "
                "being compared with "
                f"{champion.uri if champion else 'no champion'}: run recsys-promote again"
            )
        registry.move_aliases(
            name, candidate.version, None if champion is None else champion.version,
            (CHAMPION, PREVIOUS),
        )  # fmt: skip
        if champion is not None:
            registry.tag(champion, {"superseded_by": candidate.uri, "superseded_at": stamp})
    registry.record(candidate, report, stamp)  # after the aliases: tags never claim a move
    return Outcome(decision, report)


def evaluate(
    candidate: registry.RegisteredVersion,
    champion: registry.RegisteredVersion | None,
    processed_dir: str | None,
    gate: GateSettings,
    tmp: Path,
) -> dict[str, Any]:
    """Both models on one test split (the candidate's data unless `processed_dir` is given,
    its interactions after both models' training ends: `judged_test_set`): their means, and
    the paired interval of the difference."""
    kind, k = gate.metric_k()
    data_path = registry.processed_path(candidate, processed_dir)
    data = load_processed(data_path)
    device = _device(gate.device)
    versions = {"candidate": candidate, "champion": champion}
    until = {v.uri: trained_until(v.processed_dir) for v in versions.values() if v is not None}
    test_set, judged = judged_test_set(data, until)
    if test_set.users.numel() == 0:
        raise RecsysError("the test split has no users", path=data_path / "test.parquet")
    found = {}
    for role, version in versions.items():
        if version is None:
            continue
        with _scorer(version, data, processed_dir is not None, device, tmp / role) as net:
            _, ranked = evaluate_full(net, test_set, [k], gate.batch_size)
        found[role] = per_user(ranked, [k])
    metric = f"{kind}@{k}"
    users, values = found["candidate"]
    summary = {
        "processed_dir": str(data_path.resolve()),
        "input_sha256": data.metadata.get("input_sha256"),
        "n_users": int(users.numel()),
        "test_from": judged["test_from"],
        "test_rows_masked": judged.get("test_rows_masked", 0),
        "unchecked": ",".join(judged.get("unchecked", [])),
        "candidate_value": float(values[metric].mean()),
    }
    if champion is None:
        return summary
    result = comparison(
        candidate.uri, champion.uri, users, values, found["champion"],
        gate.bootstrap, gate.confidence, gate.seed,
    )["metrics"][f"test/{metric}"]  # fmt: skip
    return {
        **summary,
        "champion_value": result["b"],
        "difference": result["difference"],
        "ci_low": result["low"],
        "ci_high": result["high"],
        "confidence": gate.confidence,
        "bootstrap": gate.bootstrap,
        "p_better": result["p_a_better"],
    }


@contextlib.contextmanager
def _scorer(
    version: registry.RegisteredVersion,
    data: ProcessedData,
    common_split: bool,
    device: torch.device,
    tmp: Path,
):
    """The version's net, scoring in `data`'s id space. Without a common split given, a model
    trained on other data is refused: its indices mean other users and items."""
    tmp.mkdir()
    bundle_dir = fetch_registered(version.uri, tmp)
    try:
        info = read_info(bundle_dir)
        bundle = load_bundle(bundle_dir, device, retrieval="exact")
    except CheckpointError as err:  # e.g. an older bundle format
        raise RecsysError(f"cannot load {version.uri}: {err}") from err
    net: RecommenderNet = bundle.net
    if not same_ids(data.path, bundle_dir):
        if not common_split:
            raise RecsysError(
                f"{version.uri} was trained on other data than the candidate's "
                f"'{data.path}': its {bundle.net.n_users} users x {bundle.net.n_items} items "
                f"(input sha256 {str(info.get('input_sha256'))[:12]}...) are not that "
                f"directory's {data.n_users} x {data.n_items} (sha256 "
                f"{str(data.metadata.get('input_sha256'))[:12]}...), so neither's test split "
                "fits both. Pass data.processed_dir=DIR, a processed directory whose test "
                "period both may be judged on (users and items are matched to each model by "
                "id; ones a model never saw get its popular items)"
            )
        users = index_map(ids_in_order(data.path / "users.parquet", "user"), bundle.user_index)
        items = index_map(ids_in_order(data.path / "items.parquet", "item"), bundle.item_index)
        net = RemappedNet(bundle.net, bundle_popularity(bundle), users, items).to(device)
    with torch.inference_mode():
        yield net


def _device(name: str) -> torch.device:
    try:
        return resolve_device(name)
    except ValueError as err:
        raise RecsysError(f"device: {err}") from err


def summary(outcome: Outcome) -> str:
    """The short report printed by recsys-promote."""
    r = outcome.report
    lines = [f"candidate {r['candidate']}  champion {r['champion'] or '(none)'}"]
    if "difference" in r:
        pct = round(100 * r["confidence"])
        lines.append(
            f"{r['metric']} on {r['n_users']:,} test users ({r['processed_dir']}): candidate "
            f"{r['candidate_value']:.4f}, champion {r['champion_value']:.4f}, difference "
            f"{r['difference']:+.4f}, {pct}% CI [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] "
            f"(margin {r['margin']:+.4f}), P(candidate better) {r['p_better']:.3f}"
        )
    elif "candidate_value" in r:
        lines.append(f"{r['metric']} on {r['n_users']:,} test users: {r['candidate_value']:.4f}")
    if r.get("test_rows_masked"):
        lines.append(
            f"judged on test interactions from {r['test_from']} only: "
            f"{r['test_rows_masked']:,} earlier ones fall in a model's training period (masked)"
        )
    if r.get("unchecked"):
        lines.append(
            f"warning: whether {r['unchecked']} trained on part of this test period was not "
            "checked (its processed directory is not at hand, or its split is leave_last_out)"
        )
    lines.append(DECISION_TEXT[outcome.decision].format(**r))
    return "\n".join(lines)


DECISION_TEXT = {
    FIRST: "decision: first model registered as champion -> {candidate} is @champion",
    PROMOTED: "decision: promoted -> {candidate} is @champion, {champion} is @previous",
    FORCED: (
        "decision: FORCED (force=true overrode the gate) -> {candidate} is @champion, "
        "{champion} is @previous"
    ),
    REFUSED: (
        "decision: refused: the interval does not lie above the margin; {champion} stays "
        "@champion (force=true overrides)"
    ),
    ALREADY: "decision: {candidate} is already @champion; nothing changed",
}
