"""The HTTP contract (SPEC section 6) as pydantic models: BentoML validates every request
against them and answers 400 with the offending field, before any model code runs.

Strict types: `"10"` is not a valid `k` and `1` is not a valid `user_id`, so a client bug shows
up as a 400 instead of a silently coerced answer. Unknown keys are refused for the same reason
(a misspelt `exclude_seen` must not quietly fall back to its default).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 1000
MAX_BATCH = 1000
MAX_ID_LENGTH = 512

K = Annotated[int, Field(strict=True, ge=1, le=MAX_K, description=f"items to return, 1..{MAX_K}")]
Id = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_ID_LENGTH)]
Flag = Annotated[bool, Field(strict=True)]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(Request):
    user_id: Id
    k: K = 10
    exclude_seen: Flag = Field(True, description="leave out items the user interacted with")


class RecommendBatchRequest(Request):
    user_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_BATCH)]
    k: K = 10
    exclude_seen: Flag = True


class SimilarItemsRequest(Request):
    item_id: Id
    k: K = 10


class ScoredItem(BaseModel):
    item_id: str
    score: float


class Recommendation(BaseModel):
    user_id: str
    items: list[ScoredItem]
    fallback: Literal["popular"] | None = Field(
        None, description='"popular" when the user is unknown to the model'
    )
    model: str = Field(description="the BentoML model tag that answered")


class RecommendBatchResponse(BaseModel):
    results: list[Recommendation]


class SimilarItemsResponse(BaseModel):
    item_id: str
    items: list[ScoredItem]
    model: str
