"""recsys-train: compose the config, train (`recsys.training.run.train`), and return the
optimized metric (for sweepers)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from recsys.config import CONFIG_DIR
from recsys.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
@exit_on_user_error("recsys-train")
def run(cfg: DictConfig) -> float | None:
    from recsys.training.run import train

    metrics, objects = train(cfg)
    value = metrics.get(cfg.optimized_metric)  # measured on the selected (best) checkpoint
    if objects["trainer"].is_global_zero:
        # The last line is the metric alone, for scripts and sweep logs (docs/REFERENCE.md).
        print(f"{value:.6f}" if value is not None else "nan", flush=True)
    return value


def main() -> None:
    from recsys.training.run import quiet_third_party, resume_in_place

    quiet_third_party()
    sys.argv = [sys.argv[0], *resume_in_place(sys.argv[1:])]
    run()


if __name__ == "__main__":
    main()
