"""recsys-recommend: compose the config, then write every requested user's top-K."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import hydra
from omegaconf import DictConfig

from recsys.batch.options import ScoringOptions
from recsys.errors import exit_on_user_error
from recsys.recommend_config import CONFIG_NAME


@hydra.main(version_base="1.3", config_path=None, config_name=CONFIG_NAME)
@exit_on_user_error("recsys-recommend")
def run(cfg: DictConfig) -> int:
    from recsys.batch.layout import shard_manifest_name
    from recsys.batch.run import recommend_all

    opts = ScoringOptions(**{f.name: cfg[f.name] for f in dataclasses.fields(ScoringOptions)})
    manifest = recommend_all(str(cfg.model), str(cfg.output_dir), opts, cfg.data.processed_dir)
    print(
        f"{manifest['n_rows']:,} rows for {manifest['n_users']:,} users; "
        f"{manifest['n_fallback_users']:,} requested users get popular items"
    )
    index, count = (int(n) for n in manifest["shard"].split("/"))
    name = "manifest.json" if count == 1 else shard_manifest_name(index, count)
    print(Path(cfg.output_dir) / name, flush=True)  # the last line, for scripts
    return int(manifest["n_rows"])


def main() -> None:
    run()


if __name__ == "__main__":
    main()
