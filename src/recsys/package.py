"""recsys-package: compose the config, collect the model's parts, save them as a BentoML model."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recsys.config import CONFIG_DIR
from recsys.errors import RecsysError, exit_on_user_error


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="package")
@exit_on_user_error("recsys-package")
def run(cfg: DictConfig) -> str:
    from recsys.serving.sources import from_checkpoint, from_model_uri
    from recsys.serving.store import save_model

    if (cfg.ckpt_path is None) == (cfg.model_uri is None):
        raise RecsysError(
            "pass exactly one of ckpt_path=FILE (a recsys-train checkpoint) or "
            "model_uri=models:/recsys/N (a registered MLflow model version)"
        )
    if cfg.ckpt_path is not None:
        parts = from_checkpoint(str(cfg.ckpt_path), cfg.data.processed_dir)
    else:
        parts = from_model_uri(str(cfg.model_uri))
    tag = save_model(parts, str(cfg.model_name))
    print(tag, flush=True)
    return tag


def main() -> None:
    run()


if __name__ == "__main__":
    main()
