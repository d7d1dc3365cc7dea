"""/readyz that says which model is ready: BentoML's probe answers an empty 200 once the service
and its ranker are up (503 before), so a rollout could not tell which version a replica serves."""

from __future__ import annotations

import json

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

READYZ_PATH = "/readyz"


class ReadyzNamesTheModel:
    """ASGI middleware: BentoML's /readyz decides readiness as before (the chart's probes read
    the status only); its 200 becomes `{"status": "ready", "model", "model_version"}`."""

    def __init__(self, app: ASGIApp, model: str, model_version: str) -> None:
        self.app = app
        document = {"status": "ready", "model": model, "model_version": model_version}
        self.body = json.dumps(document).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != READYZ_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        ready = False

        async def pass_unless_ready(message: Message) -> None:
            nonlocal ready
            if message["type"] == "http.response.start":
                ready = message["status"] == 200
            if not ready:
                await send(message)

        await self.app(scope, receive, pass_unless_ready)
        if ready:
            await Response(self.body, media_type="application/json")(scope, receive, send)
