"""recsys-eval: evaluate a checkpoint on the test split; writes metrics.json, topk.parquet and
the reports (intervals.json, comparison.json, segments.json)."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from recsys.config import CONFIG_DIR
from recsys.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
@exit_on_user_error("recsys-eval")
def run(cfg: DictConfig) -> float:
    from recsys.evaluation.options import SegmentSettings
    from recsys.evaluation.report import evaluate_checkpoint

    metrics = evaluate_checkpoint(
        ckpt_path=cfg.ckpt_path,
        processed_dir=cfg.data.processed_dir,
        output_dir=cfg.eval.output_dir,
        ks=list(cfg.eval.k),
        protocol=str(cfg.eval.protocol),
        batch_size=cfg.eval.batch_size,
        n_negatives=cfg.eval.n_negatives,
        seed=cfg.eval.seed,
        device=cfg.eval.device,
        bootstrap=cfg.eval.bootstrap,
        confidence=cfg.eval.confidence,
        compare=cfg.get("compare"),
        segments=SegmentSettings(**OmegaConf.to_container(cfg.eval.segments)),
    )
    # The last line: test NDCG@10, or NDCG at the smallest cutoff when eval.k lacks 10.
    k = 10 if "test/ndcg@10" in metrics else min(cfg.eval.k)
    print_reports(Path(cfg.eval.output_dir), k)
    key = f"test/ndcg@{k}"
    print(f"{metrics[key]:.6f}", flush=True)
    return float(metrics[key])


def print_reports(out: Path, k: int) -> None:
    """The segments at cutoff k as a table, the intervals (and the comparison) one metric a
    line."""
    from recsys.evaluation.segments import table

    segments = out / "segments.json"
    if segments.is_file():
        print("\n".join(table(json.loads(segments.read_text()), k)))
    intervals = out / "intervals.json"
    if intervals.is_file():
        report = json.loads(intervals.read_text())
        pct = round(100 * report["confidence"])
        for name, v in report["metrics"].items():
            print(f"{name:<18} {v['mean']:.4f}  {pct}% CI [{v['low']:.4f}, {v['high']:.4f}]")
    comparison = out / "comparison.json"
    if comparison.is_file():
        report = json.loads(comparison.read_text())
        print(f"a = {report['a']}\nb = {report['b']}")
        for name, v in report["metrics"].items():
            print(
                f"{name:<18} a {v['a']:.4f}  b {v['b']:.4f}  a-b {v['difference']:+.4f} "
                f"[{v['low']:+.4f}, {v['high']:+.4f}]  P(a better) {v['p_a_better']:.3f}"
            )


def main() -> None:
    run()


if __name__ == "__main__":
    main()
