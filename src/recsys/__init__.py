"""recsys: train, track, package and deploy neural recommenders on review data."""

__version__ = "0.1.0"
