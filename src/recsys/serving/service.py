"""The BentoML service (docs/REFERENCE.md, HTTP API): `bentoml serve` from the project root
runs it.

Two services in one Bento. `recsys` (the entry) validates requests, maps ids, answers cold
users with popular items and serves `/recommend` and `/similar_items` itself: one user
against the catalogue is a single small matmul, cheaper than any hop. `/recommend_batch`
goes to `Ranker`, whose batchable `rank_users` API is where BentoML's adaptive batching merges
concurrent batches into one pass over the catalogue. BentoML allows one argument per
batchable API, so the `{"user_ids", "k"}` body cannot be batchable itself.

`POST /feedback` is answered by an ASGI middleware in front of BentoML's API machinery
(`recsys.serving.feedback_route`: BentoML's cost per request capped it below its target), with
a log per worker that the service instance opens.

The OpenAPI document at /docs.json is `schemas.openapi_document`, served by `PublishedOpenAPI`.

Environment: `RECSYS_MODEL` picks the model (default `recsys:latest`, the newest packaged),
`RECSYS_TORCH_THREADS` torch's threads per worker (default 1, see `torch_threads`),
`RECSYS_DEVICE` where scoring runs (default: a GPU when torch sees one, else the CPU),
`RECSYS_RETRIEVAL` exact, ann or auto (default: two-stage through the model's ANN index when
packaging built one, see `recsys.packaging.ann`), `RECSYS_FEEDBACK_DIR` and
`RECSYS_FEEDBACK_MAX_BYTES` where `/feedback` writes (see `recsys.serving.feedback`).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import uuid
from collections import Counter
from typing import Any

import aiohttp
import bentoml
import torch
from pydantic import BaseModel, ValidationError
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from recsys.devices import resolve_device
from recsys.packaging.bundle import Bundle, load_bundle, read_info
from recsys.packaging.recommend import (
    DEFAULT_K,
    NoItemVectors,
    Query,
    Ranked,
    UnknownItem,
    UntrainedItem,
    popular,
    queries,
    rank,
    recommend,
    similar,
)
from recsys.serving.feedback import FeedbackLog, settings, writable_dir
from recsys.serving.feedback_route import FeedbackEndpoint, FeedbackRoute
from recsys.serving.metrics import service_metrics
from recsys.serving.readiness import ReadyzNamesTheModel
from recsys.serving.schemas import (
    MAX_BATCH,
    OPERATIONS,
    Recommendation,
    RecommendBatchRequest,
    RecommendBatchResponse,
    RecommendRequest,
    ScoredItem,
    SimilarItemsRequest,
    SimilarItemsResponse,
    error_response,
    openapi_document,
)
from recsys.serving.version import served_version

logger = logging.getLogger(__name__)

# Collector generations sized for a server. BentoML's request-timeout middleware keeps ~20
# objects per request alive for `traffic.timeout` seconds (its timer is never cancelled), so
# at 400 req/s the old generation holds a quarter-million objects, and Python's defaults
# (700, 10, 10) walked them every few seconds: 60-150 ms pauses, p99 over 100 ms. Young
# collections every 50k allocations and full ones 100x rarer keep pauses at ~15 ms.
GC_THRESHOLDS = (50_000, 20, 100)
RANKER_ATTEMPTS = 3
# The Ranker's dispatcher answers 503 to calls it expects to miss this budget: far above the
# slowest batch (1000 users, k=1000, queued behind others), as a 503 here would be a 5xx.
MAX_LATENCY_MS = 10_000
# Probes and scrapes would drown the access log.
QUIET_PATHS = ["/livez", "/readyz", "/metrics"]
SERVICE_CONFIG: dict[str, Any] = {
    "traffic": {"timeout": 30},
    "metrics": {"enabled": True},
    "logging": {"access": {"enabled": True, "skip_paths": QUIET_PATHS}},
}


class ClientErrorsAreWarnings(logging.Filter):
    """BentoML logs every request that fails validation as an ERROR with a traceback; a
    client's bad input is not a server fault, so it becomes one WARNING line naming it."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            record.msg = f"{record.msg}: rejected, {error.error_count()} invalid field(s)"
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorsAreWarnings())


def torch_threads() -> int:
    """Intra-op threads per worker. One by default: a request scores one user (a few hundred
    microseconds of work), too little for a thread team to pay off, and workers and
    concurrent requests already use the other cores."""
    value = os.environ.get("RECSYS_TORCH_THREADS", "1")
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"RECSYS_TORCH_THREADS must be a positive integer, got '{value}'")
    return threads


def pinned_model_tag() -> str:
    """`RECSYS_MODEL` (default: the newest `recsys`) resolved once, at import in the serving
    parent, and exported: the Ranker and restarted workers inherit it, so every process loads
    the same version even if a newer one is packaged meanwhile. A missing model fails here,
    in words (BentoML would try BentoCloud and report a missing cloud context)."""
    tag = os.environ.get("RECSYS_MODEL", "recsys:latest")
    if os.environ.get("BENTOML_CONTAINERIZED") == "true":
        return tag  # the image's store holds exactly the model the Bento was built with
    stored = bentoml.models.BentoModel(tag).stored
    if stored is None:
        home = os.environ.get("BENTOML_HOME", "~/bentoml")
        raise RuntimeError(
            f"no BentoML model '{tag}' in the model store (BENTOML_HOME={home}): package one "
            "with `recsys-package ckpt_path=FILE` (make demo does), or set RECSYS_MODEL"
        )
    os.environ["RECSYS_MODEL"] = str(stored.tag)
    return str(stored.tag)


def served_model(tag: str) -> tuple[str, str]:
    """The resolved tag of model `tag` (never "latest") and its `served_version`."""
    stored = bentoml.models.get(tag)
    return str(stored.tag), served_version(str(stored.tag), read_info(stored.path))


def serving_device() -> torch.device:
    """`RECSYS_DEVICE` (e.g. cuda, cuda:1, cpu); unset: the GPU when torch sees one. Asking for
    CUDA where torch has none fails at start-up rather than serving from the CPU unnoticed."""
    wanted = os.environ.get("RECSYS_DEVICE")
    try:
        return resolve_device(wanted)
    except ValueError as err:
        raise RuntimeError(
            f"RECSYS_DEVICE={wanted}: {err}; serve from a Bento built with CUDA torch "
            "(bentofile.yaml) on a node with a GPU"
        ) from err


def load_served_bundle(model: Any) -> Bundle:
    """The bundle of a resolved BentoML model on the serving device, torch (and faiss) threads
    set, ranking known users as `RECSYS_RETRIEVAL` says: auto (default: through the model's
    ANN index when packaging built one), exact or ann."""
    threads = torch_threads()
    torch.set_num_threads(threads)
    retrieval = os.environ.get("RECSYS_RETRIEVAL", "auto")
    try:
        bundle = load_bundle(model.path, serving_device(), retrieval)
    except ValueError as err:  # CheckpointError included: no index, or an unknown value
        raise RuntimeError(f"RECSYS_RETRIEVAL={retrieval}: {err}") from err
    if bundle.ann is not None:
        import faiss

        faiss.omp_set_num_threads(threads)
    return bundle


def freeze_heap() -> None:
    """Move everything alive now out of the collector's reach (the id maps alone are hundreds
    of thousands of objects that every full collection walked, 100-250 ms each) and space out
    collections (GC_THRESHOLDS). Called once the server is up and warm."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class RankQuery(BaseModel):
    user_idx: int
    k: int
    exclude_seen: bool = True


class RankResult(BaseModel):
    items: list[str]
    scores: list[float]


MODEL_TAG = pinned_model_tag()
SERVED_TAG, MODEL_VERSION = served_model(MODEL_TAG)
# /feedback's log and counters in this process (each worker imports this module): the service
# instance opens it, `FeedbackRoute` answers with it.
FEEDBACK = FeedbackEndpoint()


# Clients recycle their connection to the Ranker after this many calls (BentoML's 100 meant a
# new session, and failed calls in flight, every fraction of a second under load).
@bentoml.service(name="recsys-ranker", runner_connection={"max_requests": 10_000}, **SERVICE_CONFIG)
class Ranker:
    """Top-k for known users, in adaptive batches."""

    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.bundle = load_served_bundle(self.model)

    @bentoml.on_startup
    def warm_up(self) -> None:
        rank(self.bundle, [Query(0, DEFAULT_K)])
        freeze_heap()

    @bentoml.api(batchable=True, max_batch_size=4 * MAX_BATCH, max_latency_ms=MAX_LATENCY_MS)
    def rank_users(self, queries: list[RankQuery]) -> list[RankResult]:
        batch = [Query(q.user_idx, q.k, q.exclude_seen) for q in queries]
        return [RankResult(items=r.items, scores=r.scores) for r in rank(self.bundle, batch)]


@bentoml.service(name="recsys", **SERVICE_CONFIG)
class RecommenderService:
    """The public API: validation, id mapping, cold start, similar items."""

    model = bentoml.models.BentoModel(MODEL_TAG)
    ranker = bentoml.depends(Ranker)

    def __init__(self) -> None:
        self.bundle = load_served_bundle(self.model)
        self.tag, self.version = SERVED_TAG, MODEL_VERSION
        self.metrics = service_metrics()
        self.metrics.model_info.labels(self.tag, self.version).set(1)
        FEEDBACK.open(FeedbackLog(*settings()), self.version, self.metrics.feedback_events)

    @bentoml.on_deployment
    def check_feedback_dir() -> None:
        """Once, in `bentoml serve`'s parent before any worker starts: an unwritable
        RECSYS_FEEDBACK_DIR stops the server with the reason (a worker failing in `__init__`
        would be restarted over and over)."""
        writable_dir(settings()[0])

    @bentoml.on_startup
    def warm_up(self) -> None:
        """Answer a known and a cold user (lazy imports, first-call caches), then freeze."""
        known = next(iter(self.bundle.user_index), "")
        batch = queries(self.bundle, [known, ""], 10, exclude_seen=True)
        for answer, user in zip(rank(self.bundle, batch), [known, ""], strict=True):
            self._recommendation(user, answer).model_dump_json()
        freeze_heap()

    @bentoml.on_shutdown
    async def close_feedback_log(self) -> None:
        """After the last request (uvicorn lets those in flight finish on SIGTERM, the ones
        `FeedbackRoute` answers included)."""
        await FEEDBACK.aclose()

    # /recommend and /similar_items are `async`: their scoring (about a millisecond) runs on
    # the event loop, in arrival order. As sync APIs BentoML would run each on its own thread,
    # and the threads' GIL handoffs cost 30% of the throughput (measured: 270 vs 390 req/s).
    @bentoml.api(input_spec=RecommendRequest)
    async def recommend(
        self, user_id: str, k: int = DEFAULT_K, exclude_seen: bool = True
    ) -> Recommendation:
        """The user's top `k` items, best first; a user the model does not know gets the most
        popular items and `"fallback": "popular"`."""
        (answer,) = recommend(self.bundle, [user_id], k, exclude_seen)
        self._count_lists("recommend", [answer])
        return self._recommendation(user_id, answer)

    @bentoml.api(input_spec=RecommendBatchRequest)
    async def recommend_batch(
        self, user_ids: list[str], k: int = DEFAULT_K, exclude_seen: bool = True
    ) -> RecommendBatchResponse:
        """`/recommend` for each of 1..1000 users, in their order."""
        batch = queries(self.bundle, user_ids, k, exclude_seen)
        known = [i for i, q in enumerate(batch) if q.user_idx >= 0]
        cold = popular(self.bundle, k) if len(known) < len(batch) else None
        answers: list[Ranked] = [cold] * len(batch)  # type: ignore[list-item]
        if known:
            ranked = await self._rank_known(
                [
                    RankQuery(user_idx=batch[i].user_idx, k=k, exclude_seen=exclude_seen)
                    for i in known
                ]
            )
            for i, result in zip(known, ranked, strict=True):
                answers[i] = Ranked(result.items, result.scores)
        self._count_lists("recommend_batch", answers)
        return RecommendBatchResponse(
            results=[self._recommendation(u, a) for u, a in zip(user_ids, answers, strict=True)]
        )

    @bentoml.api(input_spec=SimilarItemsRequest, output_spec=SimilarItemsResponse)
    async def similar_items(
        self, item_id: str, k: int = DEFAULT_K
    ) -> SimilarItemsResponse | JSONResponse:
        """The `k` items nearest to `item_id` by cosine similarity of the item vectors (NeuMF:
        the GMF tower's); 404 for an unknown item, 422 for one without training interactions
        or a model without item vectors."""
        # Client errors answer as JSON directly (the 404 and 422 of `openapi_document`): a
        # raised BentoML exception would log a traceback for every unknown id, and its body is
        # a list rather than an object.
        try:
            answer = similar(self.bundle, item_id, k)
        except UnknownItem:
            return error_response(404, f"unknown item_id '{item_id}': the model has never seen it")
        except UntrainedItem:
            return error_response(
                422, f"item_id '{item_id}' has no training interactions: its vector is untrained"
            )
        except NoItemVectors as err:
            return error_response(
                422, f"model {self.tag} ({err}) has no item embeddings, so no similar items"
            )
        return SimilarItemsResponse(
            item_id=item_id, items=_scored(answer), model=self.tag, model_version=self.version
        )

    async def _rank_known(self, batch: list[RankQuery]) -> list[RankResult]:
        """The Ranker's answer, awaited so that concurrent batches meet in its dispatcher.

        BentoML 1.4's client replaces its HTTP session every 100 calls and closes the old one
        under calls still in flight ("Cannot write to closing transport"); ranking is pure,
        so such a call is retried on the fresh session.
        """
        for attempt in range(RANKER_ATTEMPTS):
            try:
                return await self.ranker.to_async.rank_users(batch)
            except aiohttp.ClientConnectionError:
                if attempt == RANKER_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _recommendation(self, user_id: str, answer: Ranked) -> Recommendation:
        return Recommendation(
            user_id=user_id,
            items=_scored(answer),
            fallback=answer.fallback,
            model=self.tag,
            model_version=self.version,
            request_id=uuid.uuid4().hex,  # joins the feedback on this list to it
        )

    def _count_lists(self, endpoint: str, answers: list[Ranked]) -> None:
        for fallback, n in Counter(a.fallback or "none" for a in answers).items():
            self.metrics.recommendations.labels(endpoint, self.version, fallback).inc(n)


DOCS_PATH = "/docs.json"


class PublishedOpenAPI:
    """ASGI middleware answering GET /docs.json (which the UI at / reads too) with
    `openapi_document`: BentoML 1.4 has no hook into the document it generates, whose error
    bodies, request bodies and optional fields say less than the service does."""

    def __init__(self, app: ASGIApp, service: Any) -> None:
        self.app = app
        self.service = service
        self.body: bytes | None = None  # built on the first request, once per worker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != DOCS_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        if self.body is None:
            document = openapi_document(self.service.openapi_spec.asdict())
            self.body = json.dumps(document).encode()
        await Response(self.body, media_type="application/json")(scope, receive, send)


class JsonBodiesOnly:
    """ASGI middleware answering 415 to a POST to one of `routes` whose Content-Type is not
    application/json (a missing one passes: BentoML reads the body as JSON). The document
    declares JSON bodies only; BentoML would also parse forms, and answered 500 to a
    multipart Content-Type without a boundary."""

    def __init__(self, app: ASGIApp, routes: frozenset[str]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.routes:
            given = dict(scope["headers"]).get(b"content-type")
            media_type = None if given is None else given.decode("latin-1").split(";")[0]
            if media_type is not None and media_type.strip().lower() != "application/json":
                message = f"Content-Type must be application/json, got '{media_type.strip()}'"
                await error_response(415, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


RecommenderService.add_asgi_middleware(PublishedOpenAPI, service=RecommenderService)
RecommenderService.add_asgi_middleware(
    ReadyzNamesTheModel, model=SERVED_TAG, model_version=MODEL_VERSION
)
RecommenderService.add_asgi_middleware(JsonBodiesOnly, routes=frozenset(OPERATIONS))
# Innermost of ours: JsonBodiesOnly answers its 415s first.
RecommenderService.add_asgi_middleware(
    FeedbackRoute, endpoint=FEEDBACK, service_name=RecommenderService.name
)


def _scored(answer: Ranked) -> list[ScoredItem]:
    return [
        ScoredItem(item_id=i, score=s) for i, s in zip(answer.items, answer.scores, strict=True)
    ]
