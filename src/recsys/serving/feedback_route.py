"""`POST /feedback`, answered by an ASGI middleware in front of BentoML's API machinery.

Why not a `@bentoml.api`: a click is one event a request, and BentoML's cost per request (its
router, context, IO descriptor and response layers) held the route at 556-868 requests, so
events, a second on 2 cores (16 clients, `benchmarks/feedback_load.py`), under the 1,000 it
must take; answered here it takes 1,120-1,140 (p99 30 ms against 52). Validating, encoding and
counting the events cost ~60 us of a request. BentoML's own middlewares (Prometheus request
series, tracing, access log, request timeout) still wrap the route, and `JsonBodiesOnly`
answers its 415s as for the other APIs.

The contract is the one a BentoML API would keep: `FeedbackRequest` validates the body (an
empty one reads as `{}`, as BentoML reads it), a 400 is BentoML's validation error body, other
methods get Starlette's 405, and an unexpected error BentoML's 500 body.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from opentelemetry import trace
from pydantic import ValidationError
from starlette.datastructures import URL
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from recsys.serving.feedback import FeedbackLog, encode_events, now_ms
from recsys.serving.schemas import FeedbackRequest, FeedbackResponse, error_response

if TYPE_CHECKING:
    from prometheus_client import Counter as CounterMetric

logger = logging.getLogger(__name__)

FEEDBACK_PATH = "/feedback"
# BentoML's words for a validation error names the API's input model after its wrapper class;
# the same words here, so /feedback's 400s read as the other APIs' do.
INVALID = "{count} validation error for " + FeedbackRequest.__name__ + "IODescriptor"
UNEXPECTED = "An unexpected error has occurred, please check the server log."


class FeedbackEndpoint:
    """What one worker process's /feedback writes with: its `FeedbackLog`, the served model
    version and the events counter. The service instance (one a worker) opens it at start-up
    and closes it on shutdown, after uvicorn has let the requests in flight finish."""

    def __init__(self) -> None:
        self._log: FeedbackLog | None = None
        self._version = ""
        self._counter: CounterMetric | None = None

    def open(self, log: FeedbackLog, version: str, counter: CounterMetric) -> None:
        if self._log is not None:
            raise RuntimeError(f"this process's feedback log is open already ({log.directory})")
        self._log, self._version, self._counter = log, version, counter

    async def aclose(self) -> None:
        """Write what is pending and close the log."""
        if self._log is not None:
            await self._log.aclose()

    async def accept(self, body: bytes) -> Response:
        """The answer to a request body: 200 once its events are durably written."""
        try:
            events = FeedbackRequest.model_validate_json(body or b"{}").events
        except ValidationError as err:
            count = err.error_count()
            logger.warning("POST %s: rejected, %d invalid field(s)", FEEDBACK_PATH, count)
            detail = err.errors(include_context=False, include_input=False)
            return JSONResponse({"error": INVALID.format(count=count), "detail": detail}, 400)
        if self._log is None or self._counter is None:
            raise RuntimeError("the feedback log is not open: the service has not started")
        dumped = [event.model_dump() for event in events]
        try:
            await self._log.append(encode_events(dumped, self._version, now_ms()))
        except OSError as err:
            directory = self._log.directory
            logger.error("feedback: %d event(s) not written to %s: %s", len(events), directory, err)
            message = f"the feedback log could not be written ({err}); retry later"
            return error_response(503, message)
        for (kind, version), n in Counter(
            (event["type"], event["model_version"] or self._version) for event in dumped
        ).items():
            self._counter.labels(kind, version).inc(n)
        return Response(
            FeedbackResponse(accepted=len(events)).model_dump_json(), media_type="application/json"
        )


class FeedbackRoute:
    """ASGI middleware serving FEEDBACK_PATH with `endpoint`; every other request passes."""

    def __init__(self, app: ASGIApp, endpoint: FeedbackEndpoint, service_name: str) -> None:
        self.app = app
        self.endpoint = endpoint
        self.server = f"BentoML Service/{service_name}"  # BentoML's header on API answers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in (FEEDBACK_PATH, FEEDBACK_PATH + "/"):
            await self.app(scope, receive, send)
            return
        if scope["path"] != FEEDBACK_PATH:  # as Starlette's router redirects any route's
            url = URL(scope={**scope, "path": FEEDBACK_PATH})
            await RedirectResponse(str(url))(scope, receive, send)
            return
        if scope["method"] != "POST":
            response: Response = PlainTextResponse(
                "Method Not Allowed", status_code=405, headers={"Allow": "POST"}
            )
        else:
            try:
                body = await Request(scope, receive).body()
            except ClientDisconnect:
                return  # no one to answer
            response = await self._answer(body)
            self._add_headers(response)
        await response(scope, receive, send)

    async def _answer(self, body: bytes) -> Response:
        try:
            return await self.endpoint.accept(body)
        except Exception:
            logger.exception("POST %s: failed", FEEDBACK_PATH)
            return error_response(500, UNEXPECTED)

    def _add_headers(self, response: Response) -> None:
        """BentoML's: the server, and the request id its access log and traces carry (the
        id of the request's span, which BentoML's tracing middleware opened)."""
        response.headers["Server"] = self.server
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            response.headers["X-BentoML-Request-ID"] = format(span.span_id, "016x")
