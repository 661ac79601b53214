"""The HTTP API (FastAPI): DESIGN.md's routes, their models, and the guard in front.

Every answer is JSON; bad input is a 4xx ``{"error": {"code", "message"}}``. What each
route answers lives in ``freshd.queries``. The guard (pure ASGI) checks every request —
body size, the TCP token — adds the API version header, counts it in the metrics, and
hands the hot routes (``POST /v1/fresh``, ``POST /v1/sync``, ``GET /v1/packages/lookup``)
to the lean path (``freshd.lean``), which answers well-formed ones without FastAPI's
~150 µs of routing and validation. The FastAPI routes stay declared: they answer the
rest, word every validation error, and are the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import Message, Receive, Send

from freshd import __version__, queries
from freshd.lean import LEAN_ROUTES, LeanRoute, answer
from freshd.queries import (
    DEFAULT_TIMEOUT_MS,
    MAX_DIGEST_CHARS,
    MAX_ITEMS,
    MAX_NAME_CHARS,
    MAX_PATH_CHARS,
    MAX_TIMEOUT_MS,
    ApiError,
    PathSafeJSONResponse,
    Scope,
    error_response,
)
from freshd.queries import Context as Context  # re-exported: the daemon builds one
from freshd_client import schema as sc

MAX_BODY = 1 << 20
API_HEADER = (b"freshd-api", str(sc.API_VERSION).encode())
OTHER_ROUTE = "other"
"""The metrics' route label of a request to no declared route."""

State = Literal["unknown", "dirty", "clean", "error"]


# -- models -------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PackageInfo(BaseModel):
    """A package as the index holds it."""

    name: str | None
    path: str
    state: State
    tree: str | None
    meta: str | None
    files: int
    generation: int
    error: str | None


class PackageList(BaseModel):
    packages: list[PackageInfo]


def _path_length(value: str) -> str:
    if len(value) > MAX_PATH_CHARS:
        raise ValueError(f"String should have at most {MAX_PATH_CHARS} characters")
    return value


# Not Field(max_length=…): pydantic cannot measure a str holding surrogate escapes, the
# form a path that is not UTF-8 takes (os.fsdecode), and refused every such path.
PathText = Annotated[
    str,
    AfterValidator(_path_length),
    WithJsonSchema({"type": "string", "maxLength": MAX_PATH_CHARS}),
]


TimeoutMs = Annotated[int, Field(ge=0, le=MAX_TIMEOUT_MS)]


class FreshItem(_Strict):
    path: PathText
    digest: Annotated[str, Field(max_length=MAX_DIGEST_CHARS)]
    scope: Scope | None = None


class FreshRequest(_Strict):
    items: Annotated[list[FreshItem], Field(max_length=MAX_ITEMS)]
    sync: bool = False
    timeout_ms: TimeoutMs = DEFAULT_TIMEOUT_MS


class FreshResult(BaseModel):
    path: str
    fresh: bool | None
    state: State
    digest: str | None


class FreshResponse(BaseModel):
    results: list[FreshResult]
    synced: bool


class SyncRequest(_Strict):
    paths: Annotated[list[PathText], Field(max_length=MAX_ITEMS)] = []
    timeout_ms: TimeoutMs = DEFAULT_TIMEOUT_MS


class SyncAnswer(BaseModel):
    synced: bool


class Progress(BaseModel):
    done: int
    total: int


class Health(BaseModel):
    status: Literal["starting", "indexing", "ready", "stopped"]
    version: str
    api_version: int
    pid: int
    roots: list[str]
    watch: dict[str, Literal["watching", "polling", "missing"]]
    packages: int
    files: int
    pending: int
    progress: Progress | None
    index: str
    socket: str
    error: str | None


class RootRequest(_Strict):
    path: PathText


class RootsAnswer(BaseModel):
    root: str
    roots: list[str]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


# -- the app --------------------------------------------------------------------------


def create_app(ctx: Context, *, lean: bool = True) -> Any:
    """The ASGI application of one daemon (FastAPI wrapped in the guard middleware).

    ``lean=False`` sends every request through FastAPI, hot routes too (the tests
    compare both ways)."""
    app = FastAPI(
        title="freshd",
        version=__version__,
        description="Content-addressed freshness of local Python packages.",
        docs_url=None,
        redoc_url=None,
        default_response_class=PathSafeJSONResponse,
    )

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.get("/v1/health", response_model=Health)
    def health() -> Health:
        engine = ctx.engine
        packages, files = queries.totals(ctx.index)
        return Health(
            status=engine.status,
            version=__version__,
            api_version=sc.API_VERSION,
            pid=os.getpid(),
            roots=sorted(engine.roots),
            watch={r: s.mode for r, s in engine.roots.items()},
            packages=packages,
            files=files,
            pending=engine.pending(),
            progress=Progress(done=engine.progress[0], total=engine.progress[1])
            if engine.progress
            else None,
            index=ctx.index.path,
            socket=ctx.socket,
            error=engine.last_error,
        )

    @app.get("/v1/packages", response_model=PackageList)
    def packages() -> dict[str, Any]:
        return {"packages": [r.info() for r in ctx.index.packages()]}

    @app.get("/v1/packages/lookup", response_model=PackageInfo, responses=_ERRORS)
    async def lookup(
        path: Annotated[str | None, Query(max_length=MAX_PATH_CHARS)] = None,
        name: Annotated[str | None, Query(max_length=MAX_NAME_CHARS)] = None,
    ) -> dict[str, Any]:
        return queries.lookup(ctx, path, name)

    @app.post("/v1/fresh", response_model=FreshResponse, responses=_ERRORS)
    async def fresh(body: FreshRequest) -> dict[str, Any]:
        items = [(item.path, item.digest, item.scope) for item in body.items]
        return await queries.fresh(ctx, items, body.sync, body.timeout_ms)

    @app.post("/v1/sync", response_model=SyncAnswer, responses=_ERRORS)
    async def sync(body: SyncRequest) -> dict[str, Any]:
        """Return once every change made before the request is in the index (the roots of
        ``paths``, or every root)."""
        return await queries.sync_paths(ctx, body.paths, body.timeout_ms)

    @app.post("/v1/roots", response_model=RootsAnswer, responses=_ERRORS)
    async def add_root(body: RootRequest) -> RootsAnswer:
        root = queries.canonical(body.path)
        await queries.engine_call(ctx.engine.add_root, root)
        return RootsAnswer(root=root, roots=sorted(ctx.engine.roots))

    @app.delete("/v1/roots", response_model=RootsAnswer, responses=_ERRORS)
    async def remove_root(path: Annotated[str, Query(max_length=MAX_PATH_CHARS)]) -> RootsAnswer:
        root = os.path.normpath(path) if os.path.isabs(path) else path
        if root not in ctx.engine.roots:
            root = queries.canonical(path)
        await queries.engine_call(ctx.engine.remove_root, root)
        return RootsAnswer(root=root, roots=sorted(ctx.engine.roots))

    @app.get("/v1/events", response_class=StreamingResponse)
    async def events() -> StreamingResponse:
        return StreamingResponse(queries.stream(ctx), media_type="text/event-stream")

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        try:
            size = os.stat(os.path.join(ctx.index.path, "data.mdb")).st_size
        except OSError:
            size = 0
        ctx.metrics.index_bytes.set(size)
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    declared = frozenset(r.path for r in app.routes if isinstance(r, Route))
    return _Guard(app, ctx, declared, LEAN_ROUTES if lean else {})


# -- the guard: body limit, token, API version header, metrics ---------------------------


class _Guard:
    """Pure ASGI middleware in front of every route; hands the ``lean`` routes to the lean
    path, every other request to ``app``."""

    def __init__(
        self,
        app: Any,
        ctx: Context,
        routes: frozenset[str],
        lean: dict[tuple[str, str], LeanRoute],
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.routes = routes
        self.lean = lean

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        self.ctx.loop = self.ctx.loop or asyncio.get_running_loop()
        started = time.perf_counter()
        # Labelled by declared route, never by the path asked for: a client requesting
        # random paths must not grow the metrics without bound. (No route has a path
        # parameter; one that had would need matching here, not a set lookup.)
        path = scope["path"]
        route = path if path in self.routes else OTHER_ROUTE
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
        lean = self.lean.get((scope["method"], path))
        if denial is not None:
            await denial(scope, receive, send_with_header)
        elif lean is not None:
            await answer(lean, self.ctx, self.app, scope, receive, send_with_header)
        else:
            await self.app(scope, receive, send_with_header)
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
