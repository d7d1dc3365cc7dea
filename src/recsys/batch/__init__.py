"""Batch top-K for every user (recsys-recommend): resumable, sharded parquet parts."""
