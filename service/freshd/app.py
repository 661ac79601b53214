"""The HTTP API (FastAPI): DESIGN.md's routes and their models.

Every answer is JSON; bad input is a 4xx ``{"error": {"code", "message"}}``. What each
route answers lives in ``freshd.queries``. The guard in front (``freshd.guard``) checks
every request and hands health and the hot routes (``POST /v1/fresh``, ``POST
/v1/sync``, ``GET /v1/packages/lookup``) to the lean path (``freshd.lean``), which
answers well-formed ones without FastAPI's ~150 µs of routing and validation. The
FastAPI routes stay declared: they answer the rest, word every validation error, and
are the OpenAPI schema.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from freshd import __version__, queries
from freshd.guard import Guard
from freshd.lean import LEAN_ROUTES
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
from freshd.queries import Context as Context  # re-exported: the tests build one

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


class LogLine(BaseModel):
    time: str  # UTC, ISO 8601
    level: str
    message: str


class Health(BaseModel):
    status: Literal["starting", "indexing", "ready", "degraded", "stopped"]
    version: str
    api_version: int
    pid: int
    roots: list[str]
    watch: dict[str, Literal["watching", "polling", "missing", "blind"]]
    reasons: dict[str, str]  # why a root's packages answer unknown (degraded)
    packages: int
    files: int
    pending: int
    progress: Progress | None
    index: str
    socket: str
    error: str | None
    recent: list[LogLine]  # the daemon's last warnings and errors, oldest first


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


def create_app(ctx: Context, *, lean: bool = True) -> Guard:
    """The ASGI application of one daemon: FastAPI, built now, wrapped in the guard (the
    daemon itself serves ``freshd.guard.staged_app``, which builds it later).

    ``lean=False`` sends every request through FastAPI, health and the hot routes too
    (the tests compare both ways)."""
    return Guard(build_fastapi(ctx), ctx, LEAN_ROUTES if lean else {})


def build_fastapi(ctx: Context) -> FastAPI:
    """The FastAPI app: every route of DESIGN.md's table, with its models."""
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
    def health() -> dict[str, Any]:
        return queries.health(ctx)

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
        ctx.metrics.stale_readers.set(ctx.index.stale_readers_cleared)
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
