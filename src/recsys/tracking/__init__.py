"""Experiment tracking: what recsys-train adds to its MLflow run, and the registered model."""
