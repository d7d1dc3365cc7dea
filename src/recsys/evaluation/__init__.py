"""Offline evaluation: masked full-catalogue top-k, ranking metrics, the sampled protocol."""

# The cutoffs reported when none are configured (training's val/test, recsys-eval's eval.k).
# Here, not in metrics.py: the configs import it without torch.
DEFAULT_KS = (10, 20)
