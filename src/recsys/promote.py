"""recsys-promote: compose the config, then let the promotion gate move (or keep) the
registered model's `champion` alias."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from recsys.config import CONFIG_DIR
from recsys.errors import exit_on_user_error

# A refusal is an answer, not an error (exit 2): scripts and CI gates tell them apart.
REFUSED_EXIT_CODE = 3


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="promote")
@exit_on_user_error("recsys-promote")
def run(cfg: DictConfig) -> str:
    from recsys.lifecycle.options import GateSettings
    from recsys.lifecycle.promote import REFUSED, promote, summary

    gate = GateSettings(
        metric=str(cfg.metric),
        margin=float(cfg.margin),
        force=bool(cfg.force),
        bootstrap=int(cfg.bootstrap),
        confidence=float(cfg.confidence),
        seed=int(cfg.seed),
        batch_size=int(cfg.batch_size),
        device=str(cfg.device),
    )
    outcome = promote(str(cfg.model_uri), cfg.data.processed_dir, gate)
    print(summary(outcome), flush=True)  # the last line is the decision
    if outcome.decision == REFUSED:
        sys.exit(REFUSED_EXIT_CODE)
    return outcome.decision


def main() -> None:
    run()


if __name__ == "__main__":
    main()
