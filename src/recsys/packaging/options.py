"""recsys-package's retrieval settings and their defaults, in plain stdlib types: the config
schema (`recsys.config.PackageConfig`) and the index builder (`recsys.packaging.ann`) both take
them from here."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class IndexKind(StrEnum):
    auto = "auto"  # none below min_items, HNSW up to hnsw_max_items, IVF above
    none = "none"
    hnsw = "hnsw"
    ivf = "ivf"


@dataclass
class AnnOptions:
    """How packaging builds the index: recsys-package's `retrieval.*` settings (the config
    schema uses this class itself, so each default lives here only)."""

    index: IndexKind = IndexKind.auto
    # auto builds an index only for catalogues of at least this many items.
    min_items: int = 100_000
    # auto: HNSW (best recall per query time, slower to build) up to this size, IVF above.
    hnsw_max_items: int = 300_000
    # Items retrieved per user and re-ranked exactly (plus the user's seen items, masked).
    candidates: int = 500
    # Packaging fails when the two-stage recall@10 against exact top-10 is lower.
    recall_floor: float = 0.95
    recall_users: int = 1000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    # IVF lists (null: 4 sqrt(items)) and lists probed per query.
    ivf_lists: int | None = None
    nprobe: int = 64
    seed: int = 0
