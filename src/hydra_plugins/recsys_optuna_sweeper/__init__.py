"""recsys' Optuna sweeper for Hydra: `hydra/sweeper=recsys_optuna` (a Hydra plugin, so it
lives in the `hydra_plugins` namespace, where Hydra looks for plugins)."""
