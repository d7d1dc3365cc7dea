"""The HTTP contract (docs/REFERENCE.md, HTTP API) as pydantic models: BentoML (and, for
/feedback, `recsys.serving.feedback_route`) validates every request against them and answers
400 with the offending field, before any model code runs.

Strict types: `"10"` is not a valid `k` and `1` is not a valid `user_id`, so a client bug shows
up as a 400 instead of a silently coerced answer. Unknown keys are refused for the same reason
(a misspelt `exclude_seen` must not quietly fall back to its default).

The same models make the published OpenAPI document (`openapi_document`, served at
/docs.json): BentoML's own says less than the service does (see there).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema, models_json_schema
from starlette.responses import JSONResponse

from recsys.packaging.recommend import DEFAULT_K

MAX_K = 1000
MAX_BATCH = 1000
MAX_ID_LENGTH = 512
MAX_FEEDBACK = 1000
# Feedback timestamps are milliseconds since the epoch from 2000 to 2100: seconds (a common
# client bug) fall below the range and are refused rather than logged as 1970.
MIN_TIMESTAMP_MS = 946_684_800_000
MAX_TIMESTAMP_MS = 4_102_444_800_000


def _integral(value: Any) -> Any:
    """JSON has one number type: to JSON Schema, and so to the published document, 10.0 is
    the integer 10, so it is one here too (`"10"`, `true` and 2.5 are still refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


K = Annotated[
    int,
    Field(strict=True, ge=1, le=MAX_K, description=f"items to return, 1..{MAX_K}"),
    BeforeValidator(_integral),  # last: it runs first
]
Id = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_ID_LENGTH)]
Flag = Annotated[bool, Field(strict=True)]
TimestampMs = Annotated[
    int,
    Field(
        strict=True,
        ge=MIN_TIMESTAMP_MS,
        le=MAX_TIMESTAMP_MS,
        description="when it happened, milliseconds since the epoch (years 2000..2100)",
    ),
    BeforeValidator(_integral),
]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(Request):
    user_id: Id
    k: K = DEFAULT_K
    exclude_seen: Flag = Field(True, description="leave out items the user interacted with")


class RecommendBatchRequest(Request):
    user_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_BATCH)]
    k: K = DEFAULT_K
    exclude_seen: Flag = True


class SimilarItemsRequest(Request):
    item_id: Id
    k: K = DEFAULT_K


class FeedbackEvent(Request):
    """One thing a user did with an item; ids the model does not know are welcome (new users
    and items are what the next training needs)."""

    type: Literal["impression", "click", "purchase"]
    user_id: Id
    item_id: Id
    request_id: Id | None = Field(
        None, description="the request_id of the recommendation list that showed the item"
    )
    timestamp: TimestampMs | None = Field(None, description="default: when the server got it")
    model_version: Id | None = Field(
        None,
        description="the model_version of the recommendation; default: the serving model's",
    )


class FeedbackRequest(Request):
    events: Annotated[list[FeedbackEvent], Field(min_length=1, max_length=MAX_FEEDBACK)]


class ResponseModel(BaseModel):
    # Every field is in every answer (`fallback` too, as null): the document says so.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)


MODEL_VERSION = (
    "the registered MLflow version when the model came from the registry, else the version "
    "part of `model`"
)


class ScoredItem(ResponseModel):
    item_id: str
    score: float


class Recommendation(ResponseModel):
    user_id: str
    items: list[ScoredItem]
    fallback: Literal["popular"] | None = Field(
        None, description='"popular" when the user is unknown to the model'
    )
    model: str = Field(description="the BentoML model tag that answered")
    model_version: str = Field(description=MODEL_VERSION)
    request_id: str = Field(
        description="this list's id, fresh each time: send it back with the feedback on it"
    )


class RecommendBatchResponse(ResponseModel):
    results: list[Recommendation]


class SimilarItemsResponse(ResponseModel):
    item_id: str
    items: list[ScoredItem]
    model: str
    model_version: str = Field(description=MODEL_VERSION)


class FeedbackResponse(ResponseModel):
    accepted: int = Field(description="events written to the feedback log (all of them)")


# --- Error bodies --------------------------------------------------------------------------


def _absent_when_none(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class FieldError(BaseModel):
    """One reason a body was refused, as pydantic words it (BentoML leaves out the input)."""

    type: str = Field(description='pydantic\'s error type, e.g. "missing", "extra_forbidden"')
    loc: list[str | int] = Field(description="where in the body: keys and list positions")
    msg: str
    url: str | SkipJsonSchema[None] = Field(
        None, description="pydantic's page on the error, when it has one",
        json_schema_extra=_absent_when_none,
    )  # fmt: skip


class InvalidBody(ResponseModel):
    """A 400: the body is not JSON, not an object, or breaks the request schema."""

    error: str = Field(description='"N validation error(s) for <request model>"')
    detail: list[FieldError]


class ErrorMessage(ResponseModel):
    """Any other error: one message."""

    error: str


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(ErrorMessage(error=message).model_dump(), status_code=status)


# --- The OpenAPI document -------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One POST API: its body, its 200 answer, and what else it answers (status: why)."""

    request: type[BaseModel]
    response: type[BaseModel]
    errors: dict[int, str]


# Every error body but the 400's is an ErrorMessage.
ERRORS = {
    400: "Bad Request: the body is not JSON, not an object, or breaks the request schema",
    404: "Not Found: the model has never seen this item_id",
    415: "Unsupported Media Type: a Content-Type other than application/json",
    422: "Unprocessable: the item has no training interactions, or the model has no item "
    "vectors (a popularity model)",
    500: "Internal Server Error: a bug (bad input never gets one)",
    503: "Service Unavailable: the ranker is overloaded; retry later",
}
FEEDBACK_ERRORS = {
    **{s: ERRORS[s] for s in (400, 415, 500)},
    503: "Service Unavailable: the events could not be written (e.g. a full disk) and are not "
    "accepted; retry later",
}
ERROR_BODIES: dict[int, type[BaseModel]] = {400: InvalidBody}
OPERATIONS = {
    "/recommend": Operation(
        RecommendRequest, Recommendation, {s: ERRORS[s] for s in (400, 415, 500)}
    ),
    "/recommend_batch": Operation(
        RecommendBatchRequest, RecommendBatchResponse, {s: ERRORS[s] for s in (400, 415, 500, 503)}
    ),
    "/similar_items": Operation(
        SimilarItemsRequest, SimilarItemsResponse, {s: ERRORS[s] for s in (400, 404, 415, 422, 500)}
    ),
    "/feedback": Operation(FeedbackRequest, FeedbackResponse, FEEDBACK_ERRORS),
}
# Routes an ASGI middleware answers rather than a BentoML API (recsys.serving.feedback_route),
# so absent from BentoML's document: the description each gets in ours.
MIDDLEWARE_ROUTES = {
    "/feedback": "Append 1..1000 events (impressions, clicks, purchases) to the feedback log; "
    "answers once they are on disk, so an accepted event is never lost. Ids the model does not "
    "know are accepted: new users and items are what the next training learns."
}
API_TAG = "Service APIs"  # BentoML's tag on its APIs
COMPONENTS = "#/components/schemas/{model}"


def openapi_document(generated: dict[str, Any]) -> dict[str, Any]:
    """BentoML's generated document (`Service.openapi_spec.asdict()`) made to tell the truth
    about OPERATIONS, for clients and client generators. BentoML 1.4:

    - declares every error body as `{"error": str, "detail": str}`, where a 400's `detail` is
      pydantic's list of field errors; declares 404 everywhere and 422 nowhere;
    - leaves `requestBody.required` out, while a missing body is refused;
    - inlines each body schema with its `anyOf` cut to the first branch (`fallback` lost its
      null), and names the schemas after its own wrapper classes;
    - labels pydantic's JSON Schema (2020-12: `const`, `"type": "null"`) OpenAPI 3.0.2, the
      dialect of which is 3.1's.

    Here each operation's body and answers are `$ref`s to OPERATIONS' own models, the body is
    required, and the document is OpenAPI 3.1.0. MIDDLEWARE_ROUTES are added as BentoML would
    describe an API (less its `x-bentoml-name`: BentoML's client cannot call them). Infrastructure
    routes stay as generated.
    """
    doc = copy.deepcopy(generated)
    doc["openapi"] = "3.1.0"
    apis = {
        route for route, item in doc["paths"].items() if "x-bentoml-name" in item.get("post", {})
    }
    if apis | set(MIDDLEWARE_ROUTES) != set(OPERATIONS) or apis & set(MIDDLEWARE_ROUTES):
        raise ValueError(
            f"the service's APIs {sorted(apis)} and the middleware routes "
            f"{sorted(MIDDLEWARE_ROUTES)} are not OPERATIONS {sorted(OPERATIONS)}"
        )
    for route, description in MIDDLEWARE_ROUTES.items():
        operation_id = f"{doc['info']['title']}__{route.strip('/')}"
        post = {"tags": [API_TAG], "description": description, "operationId": operation_id}
        doc["paths"][route] = {"post": post}
    models: dict[type[BaseModel], Any] = {}
    for operation in OPERATIONS.values():
        models[operation.request] = "validation"
        for model in [operation.response, InvalidBody, ErrorMessage]:
            models.setdefault(model, "serialization")
    _, schemas = models_json_schema(list(models.items()), ref_template=COMPONENTS)
    for route, operation in OPERATIONS.items():
        post = doc["paths"][route]["post"]
        post["requestBody"] = {"required": True, "content": _json(operation.request)}
        post["responses"] = {
            "200": {"description": "Successful Response", "content": _json(operation.response)},
            **{
                str(status): {
                    "description": why,
                    "content": _json(ERROR_BODIES.get(status, ErrorMessage)),
                }
                for status, why in sorted(operation.errors.items())
            },
        }
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    components.update(schemas["$defs"])
    for name in set(components) - _referenced(doc):
        del components[name]  # BentoML's wrappers and error schemas, now unused
    return doc


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": COMPONENTS.format(model=model.__name__)}}}


def _referenced(doc: dict[str, Any]) -> set[str]:
    """Names of the component schemas reachable from the paths."""
    prefix = COMPONENTS.format(model="")
    components = doc.get("components", {}).get("schemas", {})
    seen: set[str] = set()
    todo: list[Any] = [doc["paths"]]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(prefix) and ref[len(prefix) :] not in seen:
                seen.add(ref[len(prefix) :])
                todo.append(components.get(ref[len(prefix) :]))
            todo.extend(value for key, value in node.items() if key != "$ref")
        elif isinstance(node, list):
            todo.extend(node)
    return seen
