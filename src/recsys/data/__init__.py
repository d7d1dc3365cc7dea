"""Data: input schemas, the polars preprocessing pipeline, atomic I/O and synthetic data."""
