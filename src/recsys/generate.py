"""recsys-generate: compose the config and stream synthetic reviews to a file."""

from __future__ import annotations

import dataclasses
import sys

import hydra
from omegaconf import DictConfig

from recsys.config import CONFIG_DIR
from recsys.data.options import SyntheticSpec
from recsys.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="generate")
@exit_on_user_error("recsys-generate")
def main(cfg: DictConfig) -> None:
    from recsys.data.synthetic import write_reviews  # numpy/polars load after arg parsing

    spec = SyntheticSpec(**{f.name: cfg[f.name] for f in dataclasses.fields(SyntheticSpec)})
    lines = write_reviews(cfg.out, spec)
    print(
        f"wrote {lines:,} reviews ({spec.n_users:,} users, {spec.n_items:,} items, "
        f"seed {spec.seed}) to {cfg.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
