"""The guard in front of every route, and a daemon that answers before FastAPI is loaded.

The guard (pure ASGI) checks every request — body size, the TCP token — adds the API
version header, counts it in the metrics, and answers ``GET /v1/health`` itself (it has
no input to parse). Every other request goes to the FastAPI app (``freshd.api.app``): the one
place requests are parsed and validated, words every error and is the OpenAPI schema.

Importing FastAPI and building its app costs ~0.3 s of CPU, which a starting daemon
would pay while it watches and crawls, on the same interpreter lock. So the daemon
serves a *staged* guard: health answers at once, and the FastAPI app is built in a
thread once the index is ready, or when a request needs it first (that request waits
for it). This module does not import FastAPI.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from freshd.api import queries
from freshd.api.queries import Context, PathSafeJSONResponse, error_response
from freshd_client.transport import locations

log = logging.getLogger("freshd")

MAX_BODY = 1 << 20
API_HEADER = (locations.API_HEADER.encode(), str(locations.API_VERSION).encode())
HEALTH = "/v1/health"
OTHER_ROUTE = "other"
"""The metrics' route label of a request to no declared route."""
ROUTES = frozenset(
    {
        "/openapi.json",
        "/v1/health",
        "/v1/packages",
        "/v1/packages/lookup",
        "/v1/fresh",
        "/v1/sync",
        "/v1/roots",
        "/v1/events",
        "/metrics",
    }
)
"""The FastAPI app's declared paths (tests/test_app.py checks they are its routes): the
route labels of the metrics, known before the app is built."""


class Guard:
    """Pure ASGI middleware in front of every route; answers health, and hands every other
    request to ``app``: the FastAPI app, or, while it is None, the one ``build`` makes
    (``prepare``)."""

    def __init__(
        self, app: ASGIApp | None, ctx: Context, build: Callable[[], ASGIApp] | None = None
    ) -> None:
        self.app = app
        self.ctx = ctx
        self._build = build
        self._built: concurrent.futures.Future[ASGIApp] | None = None
        self._lock = threading.Lock()

    def prepare(self) -> concurrent.futures.Future[ASGIApp]:
        """Start building the app in a thread (once); the future of it."""
        with self._lock:
            if self._built is None:
                built: concurrent.futures.Future[ASGIApp] = concurrent.futures.Future()
                self._built = built
                if self.app is not None:
                    built.set_result(self.app)
                else:
                    threading.Thread(
                        target=self._make, args=(built,), name="freshd-http-app", daemon=True
                    ).start()
            return self._built

    def _make(self, built: concurrent.futures.Future[ASGIApp]) -> None:
        assert self._build is not None, "a Guard without an app needs a build function"
        started = time.perf_counter()
        try:
            app = self._build()
        except BaseException as exc:
            log.exception("cannot build the HTTP app")
            built.set_exception(exc)
            return
        log.debug("HTTP app built in %.2f s", time.perf_counter() - started)
        built.set_result(app)

    async def _full(self) -> ASGIApp:
        if self.app is None:
            self.app = await asyncio.wrap_future(self.prepare())
        return self.app

    async def _fallback(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (await self._full())(scope, receive, send)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._fallback(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        self.ctx.loop = self.ctx.loop or asyncio.get_running_loop()
        started = time.perf_counter()
        # Labelled by declared route, never by the path asked for: a client requesting
        # random paths must not grow the metrics without bound. (No route has a path
        # parameter; one that had would need matching here, not a set lookup.)
        path = scope["path"]
        route = path if path in ROUTES else OTHER_ROUTE
        status_seen = [0]

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_seen[0] = message["status"]
                message["headers"] = [*message.get("headers", []), API_HEADER]
            await send(message)

        if scope["method"] in ("POST", "DELETE"):
            # Every body is JSON: accept it whatever Content-Type a client (curl -d) sent.
            scope["headers"] = [
                *((k, v) for k, v in scope.get("headers", []) if k != b"content-type"),
                (b"content-type", b"application/json"),
            ]
        denial = self._deny(scope)
        if denial is not None:
            await denial(scope, receive, send_with_header)
        elif path == HEALTH and scope["method"] == "GET":
            await (await health(self.ctx))(scope, receive, send_with_header)
        else:
            await self._fallback(scope, receive, send_with_header)
        self.ctx.metrics.queries.labels(route, str(status_seen[0])).inc()
        self.ctx.metrics.latency.labels(route).observe(time.perf_counter() - started)

    def _deny(self, scope: dict[str, Any]) -> JSONResponse | None:
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return error_response(
                413, "too_large", f"request bodies are limited to {MAX_BODY} bytes"
            )
        if b"transfer-encoding" in headers:  # a body of unknown size: refused, not buffered
            return error_response(411, "length_required", "send request bodies with Content-Length")
        server = scope.get("server")
        over_tcp = server is not None and server[1] is not None
        if over_tcp:
            token = self.ctx.token
            given = headers.get(b"authorization", b"")
            if token is None or not hmac.compare_digest(given, f"Bearer {token}".encode()):
                return error_response(
                    401, "unauthorized", "TCP clients must send Authorization: Bearer"
                )
        return None


async def health(ctx: Context) -> PathSafeJSONResponse:
    """The answer of ``GET /v1/health``. It counts every package record: off the event
    loop, so that hot queries do not wait."""
    return PathSafeJSONResponse(await asyncio.to_thread(queries.health, ctx))


def staged_app(ctx: Context) -> Guard:
    """The daemon's app: health now, the FastAPI app when ``prepare`` is called or a
    request needs it."""

    def build() -> ASGIApp:
        from freshd.api.app import build_fastapi  # ~0.3 s: FastAPI, pydantic, the models

        return build_fastapi(ctx)

    return Guard(None, ctx, build)
