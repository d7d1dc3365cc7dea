"""Recommender networks: plain `nn.Module`s that score pairs and the full catalogue."""

from recsys.models.base import RecommenderNet
from recsys.models.ease import EASE
from recsys.models.ials import IALS
from recsys.models.mf import MF
from recsys.models.ncf import GMF, MLP, NeuMF
from recsys.models.popularity import Popularity

__all__ = ["EASE", "GMF", "IALS", "MF", "MLP", "NeuMF", "Popularity", "RecommenderNet"]
