"""recsys-package: compose the config, then save the model's bundle as a BentoML model: written
from a checkpoint, or copied from a registered MLflow version."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recsys.config import CONFIG_DIR
from recsys.errors import exit_on_user_error


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="package")
@exit_on_user_error("recsys-package")
def run(cfg: DictConfig) -> str:
    from recsys.packaging.options import AnnOptions
    from recsys.packaging.store import package

    tag = package(
        None if cfg.ckpt_path is None else str(cfg.ckpt_path),
        None if cfg.model_uri is None else str(cfg.model_uri),
        cfg.data.processed_dir,
        str(cfg.model_name),
        AnnOptions(**cfg.retrieval),
    )
    print(tag, flush=True)  # the last line: the tag, for scripts (make demo)
    return tag


def main() -> None:
    run()


if __name__ == "__main__":
    main()
