"""One training epoch through a recsys tree's own `recsys-train` code, timed in-loop.

Run by `train_throughput.py` in a subprocess, once with this checkout and once with an older
commit on PYTHONPATH, so each side trains with its own modules and its own `conf/` defaults
(the config directory sits next to the `src/` that is imported). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
import warnings

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processed", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="recsys-train overrides, e.g. model=mf")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    import lightning as L
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import recsys
    from recsys.config import CONFIG_DIR
    from recsys.training.builders import build_module
    from recsys.training.callbacks import Throughput

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            [f"data.processed_dir={args.processed}", "logger=none", *args.overrides],
        )
    L.seed_everything(cfg.seed, verbose=False)
    start = time.perf_counter()
    datamodule = instantiate(cfg.data)
    datamodule.load()
    module = build_module(cfg, datamodule)
    throughput = Throughput()
    trainer = L.Trainer(
        callbacks=[throughput],
        accelerator=cfg.trainer.accelerator,
        devices=1,
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    trainer.fit(module, datamodule=datamodule)
    end_to_end = time.perf_counter() - start
    batch = getattr(datamodule, "train_batch_size", datamodule.batch_size)
    print(
        json.dumps(
            {
                "recsys_source": recsys.__file__,
                "model": cfg.model.net._target_.rsplit(".", 1)[-1],
                "batch_size": int(batch),
                "lr": float(module.optimizers().param_groups[0]["lr"]),
                "samples": throughput.samples,
                "in_loop_s": throughput.seconds,
                "end_to_end_s": end_to_end,
                # This process's peak: data, sampler, model, optimizer state (Linux: KiB).
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
