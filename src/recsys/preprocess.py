"""recsys-preprocess: compose the config and run the data pipeline."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recsys.config import CONFIG_DIR
from recsys.data.fingerprint import start_fingerprint
from recsys.data.options import PrepareOptions
from recsys.errors import RecsysError, exit_on_user_error


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="preprocess")
@exit_on_user_error("recsys-preprocess")
def main(cfg: DictConfig) -> None:
    data = cfg.data
    if data.input is None:
        raise RecsysError("missing required setting data.input=FILE (a .jsonl or .jsonl.gz file)")
    # Hash the input while polars and the pipeline are still being imported.
    fingerprint = start_fingerprint(data.input)
    from recsys.data.prepare import prepare_dataset

    options = PrepareOptions(
        min_interactions=data.min_interactions,
        split=data.split,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
    )
    prepare_dataset(data.input, data.processed_dir, options, fingerprint=fingerprint)


if __name__ == "__main__":
    main()
