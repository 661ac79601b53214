"""The HTTP API (FastAPI): DESIGN.md's routes and their models.

Every answer is JSON; bad input is a 4xx ``{"error": {"code", "message"}}``. What each
route answers lives in ``freshd.api.queries``; the models here are the one description of
each request, which FastAPI validates and documents (the OpenAPI schema). The guard in
front (``freshd.api.guard``) checks every request and answers health.

The hot routes (``POST /v1/fresh``, ``POST /v1/sync``, ``GET /v1/packages/lookup``)
are ``ModelRoute``s: FastAPI documents them from their signatures like any route, and
their one input model is validated by pydantic without FastAPI's per-request dependency
machinery; they return their JSON already encoded (``response_model`` documents it,
nothing serialises it a second time). Together ~100 µs of a request (issue 22).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from freshd import __version__
from freshd.api import queries
from freshd.api.guard import Guard
from freshd.api.guard import health as health_response
from freshd.api.queries import (
    DEFAULT_TIMEOUT_MS,
    MAX_DIGEST_CHARS,
    MAX_ITEMS,
    MAX_NAME_CHARS,
    MAX_PATH_CHARS,
    MAX_TIMEOUT_MS,
    PathSafeJSONResponse,
    Scope,
    error_response,
)
from freshd.api.queries import Context as Context  # re-exported: the tests build one
from freshd.errors import ApiError

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


class LookupQuery(BaseModel):
    """The query of ``GET /v1/packages/lookup``: exactly one of ``path`` and ``name``
    (which one is checked by the route, as a 400)."""

    path: Annotated[str | None, Field(max_length=MAX_PATH_CHARS)] = None
    name: Annotated[str | None, Field(max_length=MAX_NAME_CHARS)] = None


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


# -- the hot routes -------------------------------------------------------------------


class ModelRoute(APIRoute):
    """A route whose endpoint takes one model: the JSON body (POST) or the query string
    (GET). FastAPI builds the route, its OpenAPI entry and its error handling as for any
    route (a custom ``APIRoute`` class, FastAPI's documented extension point); only the
    request handler is this one, which validates the input with the model — the same
    pydantic validation, errors raised as FastAPI's ``RequestValidationError`` with its
    locations — and calls the endpoint, skipping FastAPI's dependency solving and
    response serialisation (~70 µs a request, ``bench/bench_asgi.py``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        hints = get_type_hints(self.endpoint, include_extras=True)
        hints.pop("return", None)
        ((_name, hint),) = hints.items()
        model: type[BaseModel] = get_args(hint)[0] if get_origin(hint) is Annotated else hint
        source = "query" if "GET" in (self.methods or ()) else "body"
        endpoint: Callable[[BaseModel], Awaitable[Response]] = self.endpoint

        async def handler(request: Request) -> Response:
            if source == "query":
                data: Any = dict(request.query_params)
            else:
                try:
                    raw = await request.body()
                except ClientDisconnect:  # answered for the metrics; uvicorn drops it
                    raise StarletteHTTPException(400, "the client left mid-body") from None
                data = _json_body(raw)
            try:
                value = model.model_validate(data, from_attributes=True)  # worded as FastAPI
            except ValidationError as exc:
                errors = [{**e, "loc": (source, *e["loc"])} for e in exc.errors()]
                raise RequestValidationError(errors) from None
            return await endpoint(value)

        return handler


def _json_body(raw: bytes) -> Any:
    """A request body's JSON value, refused as FastAPI refuses it."""
    if not raw:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing])
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error"}
        raise RequestValidationError([{**error, "input": {}, "ctx": {"error": exc.msg}}]) from None
    except (ValueError, RecursionError):  # not UTF-8, or nested too deep
        raise StarletteHTTPException(400, "There was an error parsing the body") from None


# -- the app --------------------------------------------------------------------------


def create_app(ctx: Context) -> Guard:
    """The ASGI application of one daemon: FastAPI, built now, wrapped in the guard (the
    daemon itself serves ``freshd.api.guard.staged_app``, which builds it later)."""
    return Guard(build_fastapi(ctx), ctx)


def build_fastapi(ctx: Context) -> FastAPI:
    """The FastAPI app: every route of DESIGN.md's table, with its models."""
    app = FastAPI(
        title="freshd",
        version=__version__,
        description="Content-addressed freshness of local Python packages.",
        docs_url=None,
        redoc_url=None,
        default_response_class=PathSafeJSONResponse,
        # no OpenTelemetry here: FastAPI need not look for a provider on every request
        # (older releases keep the keyword as an unused extra)
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    # The hot routes first: a request is matched against the routes in order.
    async def lookup(query: Annotated[LookupQuery, Query()]) -> Response:
        return PathSafeJSONResponse(queries.lookup(ctx, query.path, query.name))

    async def fresh(body: FreshRequest) -> Response:
        items = [(item.path, item.digest, item.scope) for item in body.items]
        return PathSafeJSONResponse(await queries.fresh(ctx, items, body.sync, body.timeout_ms))

    async def sync(body: SyncRequest) -> Response:
        """Return once every change made before the request is in the index (the roots of
        ``paths``, or every root)."""
        return PathSafeJSONResponse(await queries.sync_paths(ctx, body.paths, body.timeout_ms))

    for path, endpoint, method, answer in (
        ("/v1/fresh", fresh, "POST", FreshResponse),
        ("/v1/packages/lookup", lookup, "GET", PackageInfo),
        ("/v1/sync", sync, "POST", SyncAnswer),
    ):
        app.router.add_api_route(
            path,
            endpoint,
            methods=[method],
            response_model=answer,
            responses=_ERRORS,
            route_class_override=ModelRoute,
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
    async def health() -> Response:
        """Answered by the guard in front; declared here for the schema."""
        return await health_response(ctx)

    @app.get("/v1/packages", response_model=PackageList)
    def packages() -> dict[str, Any]:
        return {"packages": [r.info() for r in ctx.index.packages()]}

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
