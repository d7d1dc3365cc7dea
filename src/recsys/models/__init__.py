"""Recommender networks: plain `nn.Module`s that score pairs and the full catalogue."""

from recsys.models.base import Recommender
from recsys.models.mf import MF
from recsys.models.ncf import GMF, MLP, NeuMF
from recsys.models.popularity import Popularity

__all__ = ["GMF", "MF", "MLP", "NeuMF", "Popularity", "Recommender"]
