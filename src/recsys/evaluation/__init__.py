"""Offline evaluation: masked full-catalogue top-k, ranking metrics, the sampled protocol."""
