"""recsys-eval: evaluate a checkpoint on the test split; writes metrics.json and topk.parquet."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recsys.config import CONFIG_DIR
from recsys.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
@exit_on_user_error("recsys-eval")
def run(cfg: DictConfig) -> float:
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
    )
    key = "test/ndcg@10" if "test/ndcg@10" in metrics else next(iter(metrics))
    print(f"{metrics[key]:.6f}", flush=True)
    return float(metrics[key])


def main() -> None:
    run()


if __name__ == "__main__":
    main()
