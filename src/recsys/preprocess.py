"""recsys-preprocess: compose the config and run the data pipeline on reviews and/or the
service's feedback log."""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from recsys.config import CONFIG_DIR
from recsys.data.fingerprint import FileFingerprint, start_fingerprint
from recsys.data.options import PrepareOptions
from recsys.errors import RecsysError, exit_on_user_error

_early: dict[str, FileFingerprint] = {}


def _fingerprint_for(path: str) -> FileFingerprint | None:
    """The hash started before Hydra composed, if it is of this very file; else a new one."""
    early = _early.pop("input", None)
    if early is not None:
        try:
            if os.path.samefile(early.path, path):
                return early
        except OSError:
            pass
    return start_fingerprint(path)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="preprocess")
@exit_on_user_error("recsys-preprocess")
def run(cfg: DictConfig) -> None:
    data = cfg.data
    if data.input is None and data.feedback is None:
        raise RecsysError(
            "missing required setting data.input=FILE (reviews, a .jsonl or .jsonl.gz file) "
            "or data.feedback=PATH (the service's feedback directory, or one of its files)"
        )
    fingerprint = None if data.input is None else _fingerprint_for(data.input)
    from recsys.data.prepare import prepare_dataset  # polars loads while the hash runs

    options = PrepareOptions(
        min_interactions=data.min_interactions,
        split=data.split,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
        split_from=data.split_from,
        feedback_events=tuple(data.feedback_events),
    )
    prepare_dataset(
        data.input,
        data.processed_dir,
        options,
        fingerprint=fingerprint,
        feedback=data.feedback,
    )


def main() -> None:
    """Console entry point. Hashing the input costs as much CPU as parsing it, so it starts
    from the raw `data.input=` argument while Hydra is still composing (single-threaded
    start-up the second core would idle through); `run` checks it is the composed input."""
    for arg in sys.argv[1:]:
        if arg.startswith("data.input="):
            early = start_fingerprint(arg.split("=", 1)[1])
            if early is not None:
                _early["input"] = early
    run()


if __name__ == "__main__":
    main()
