"""The HTTP API (FastAPI): DESIGN.md's routes, answered from the index.

Every answer is JSON; bad input is a 4xx ``{"error": {"code", "message"}}``.
Queries read LMDB in the event loop (a read transaction costs microseconds);
nothing a client sends makes the daemon read a file: paths are looked up in the
index, and resolved on disk only when they lie inside a root.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from freshd import __version__
from freshd.engine import Engine
from freshd.index import Index
from freshd.indexer import canonical_root
from freshd.metrics import Metrics
from freshd_client import digest as dg
from freshd_client import schema as sc
from freshd_client.errors import FreshdError

MAX_BODY = 1 << 20
MAX_ITEMS = 10_000
API_HEADER = (b"freshd-api", str(sc.API_VERSION).encode())
_SSE_QUEUE = 1024
_SSE_KEEPALIVE_SECONDS = 15.0

Scope = Literal["tree", "meta"]
State = Literal["unknown", "dirty", "clean", "error"]


class ApiError(Exception):
    """A 4xx answer with a machine-readable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


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


MAX_PATH_CHARS = 4096


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


class FreshItem(_Strict):
    path: PathText
    digest: Annotated[str, Field(max_length=80)]
    scope: Scope | None = None


class FreshRequest(_Strict):
    items: Annotated[list[FreshItem], Field(max_length=MAX_ITEMS)]
    sync: bool = False
    timeout_ms: Annotated[int, Field(ge=0, le=60_000)] = 1000


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
    timeout_ms: Annotated[int, Field(ge=0, le=60_000)] = 1000


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


# -- the daemon's shared state ------------------------------------------------------


@dataclass
class Context:
    """What the routes need: the engine, the index, settings."""

    engine: Engine
    index: Index
    metrics: Metrics
    socket: str
    token: str | None = None
    subscribers: set[asyncio.Queue[str | None]] = field(default_factory=set)
    loop: asyncio.AbstractEventLoop | None = None
    closing: bool = False

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Called on the engine thread: hand an event to every SSE subscriber."""
        loop = self.loop
        if loop is None or not self.subscribers:
            return
        message = f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        loop.call_soon_threadsafe(self._fan_out, message)

    def _fan_out(self, message: str | None) -> None:
        for q in list(self.subscribers):
            try:
                q.put_nowait(message)
            except asyncio.QueueFull:
                self.subscribers.discard(q)  # a subscriber that does not read is dropped
                q.get_nowait()
                q.put_nowait(None)


# -- the app --------------------------------------------------------------------------


def create_app(ctx: Context) -> Any:
    """The ASGI application of one daemon (FastAPI wrapped in the guard middleware)."""
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
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.get("/v1/health", response_model=Health)
    def health() -> Health:
        engine = ctx.engine
        packages, files = _totals(ctx.index)
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
    def lookup(
        path: Annotated[str | None, Query(max_length=4096)] = None,
        name: Annotated[str | None, Query(max_length=256)] = None,
    ) -> dict[str, Any]:
        if (path is None) == (name is None):
            raise ApiError(400, "bad_request", "give exactly one of path= or name=")
        record = _by_name(ctx, name) if name is not None else _by_path(ctx, path or "")
        if record is None:
            raise ApiError(404, "not_found", f"{path or name} is not an indexed package")
        return record.info()

    @app.post("/v1/fresh", response_model=FreshResponse, responses=_ERRORS)
    async def fresh(body: FreshRequest) -> FreshResponse:
        wanted = [(item, _scope_of(item)) for item in body.items]
        engine = ctx.engine
        ready = engine.status == "ready" and engine.alive and not engine.last_error
        synced = False
        if body.sync and ready:
            roots = {_root_for(ctx, item.path) for item in body.items}
            synced = await _sync(ctx, roots, body.timeout_ms / 1000)
        # A sync that did not complete answers nothing: "fast" is not what was asked.
        trusted = ready and (synced or not body.sync)
        results = []
        with sc.begin_read(ctx.index.env) as txn:
            for item, (scope, raw) in wanted:
                record = _by_path(ctx, item.path, txn=txn)
                results.append(_freshness(item.path, record, scope, raw, trusted))
        return FreshResponse(results=results, synced=synced)

    @app.post("/v1/sync", response_model=SyncAnswer, responses=_ERRORS)
    async def sync(body: SyncRequest) -> SyncAnswer:
        """Return once every change made before the request is in the index (the roots of
        ``paths``, or every root)."""
        engine = ctx.engine
        if engine.status != "ready" or not engine.alive:
            return SyncAnswer(synced=False)
        roots: set[str | None] = {_root_for(ctx, p) for p in body.paths} if body.paths else {None}
        return SyncAnswer(synced=await _sync(ctx, roots, body.timeout_ms / 1000))

    @app.post("/v1/roots", response_model=RootsAnswer, responses=_ERRORS)
    async def add_root(body: RootRequest) -> RootsAnswer:
        root = _canonical(body.path)
        await _engine_call(ctx.engine.add_root, root)
        return RootsAnswer(root=root, roots=sorted(ctx.engine.roots))

    @app.delete("/v1/roots", response_model=RootsAnswer, responses=_ERRORS)
    async def remove_root(path: Annotated[str, Query(max_length=4096)]) -> RootsAnswer:
        root = os.path.normpath(path) if os.path.isabs(path) else path
        if root not in ctx.engine.roots:
            root = _canonical(path)
        await _engine_call(ctx.engine.remove_root, root)
        return RootsAnswer(root=root, roots=sorted(ctx.engine.roots))

    @app.get("/v1/events", response_class=StreamingResponse)
    async def events() -> StreamingResponse:
        return StreamingResponse(_stream(ctx), media_type="text/event-stream")

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        try:
            size = os.stat(os.path.join(ctx.index.path, "data.mdb")).st_size
        except OSError:
            size = 0
        ctx.metrics.index_bytes.set(size)
        return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return _Guard(app, ctx)


# -- route helpers --------------------------------------------------------------------


class PathSafeJSONResponse(JSONResponse):
    """JSON that can carry any path. A name that is not UTF-8 reaches Python as surrogate
    escapes (``os.fsdecode``), which UTF-8 cannot encode: such an answer is sent with
    ``\\udcXX`` escapes instead, and ``os.fsencode(json.loads(...))`` gives the bytes back."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return PathSafeJSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _totals(index: Index) -> tuple[int, int]:
    def count(txn: Any) -> tuple[int, int]:
        files = packages = 0
        for _key, value in txn.cursor(db=index.dbs[sc.DB_PACKAGES]):
            packages += 1
            files += sc.PACKAGE_HEAD.unpack_from(value)[3]
        return packages, files

    return index.read(count)


def _scope_of(item: FreshItem) -> tuple[dg.Scope, bytes]:
    try:
        scope, raw = dg.parse(item.digest)
    except ValueError as exc:
        raise ApiError(422, "bad_digest", f"{item.digest!r}: {exc}") from None
    if item.scope is not None and item.scope != scope:
        raise ApiError(422, "bad_digest", f"{item.digest!r} is a {scope} digest, not {item.scope}")
    return scope, raw


def _normalized(path: str) -> str:
    if not path or "\x00" in path or not os.path.isabs(path):
        raise ApiError(400, "bad_path", f"{path!r} is not an absolute path")
    return os.path.normpath(path)


def _by_path(ctx: Context, path: str, *, txn: Any = None) -> sc.PackageRecord | None:
    """The record of ``path``; resolved on disk only when it lies inside a root."""
    normal = _normalized(path)
    own = txn is None
    txn = txn or sc.begin_read(ctx.index.env)
    try:
        db = ctx.index.dbs[sc.DB_PACKAGES]
        record = sc.get_package(txn, db, normal)
        if record is None and ctx.engine.root_of(normal) is not None:
            real = os.path.realpath(normal)
            if real != normal:
                record = sc.get_package(txn, db, real)
        return record
    finally:
        if own:
            txn.abort()


def _by_name(ctx: Context, name: str) -> sc.PackageRecord | None:
    from freshd_client.project import normalize_name

    def find(txn: Any) -> list[str]:
        raw = txn.get(sc.name_key(normalize_name(name)), db=ctx.index.dbs[sc.DB_NAMES])
        return list(json.loads(bytes(raw))) if raw else []

    paths = ctx.index.read(find)
    if len(paths) > 1:
        raise ApiError(409, "ambiguous", f"{name} names {len(paths)} packages: {', '.join(paths)}")
    return ctx.index.package(paths[0]) if paths else None


def _root_for(ctx: Context, path: str) -> str | None:
    return ctx.engine.root_of(_normalized(path))


def _freshness(
    path: str, record: sc.PackageRecord | None, scope: dg.Scope, raw: bytes, ready: bool
) -> FreshResult:
    if record is None:
        return FreshResult(path=path, fresh=None, state="unknown", digest=None)
    current = record.tree if scope == "tree" else record.meta
    if not ready or record.state != "clean" or current is None:
        return FreshResult(path=path, fresh=None, state=record.state, digest=None)
    return FreshResult(
        path=path, fresh=dg.parse(current)[1] == raw, state=record.state, digest=current
    )


def _canonical(path: str) -> str:
    _normalized(path)
    try:
        return canonical_root(path)
    except FreshdError as exc:
        raise ApiError(400, "bad_path", str(exc)) from None


async def _sync(ctx: Context, roots: set[str | None], timeout: float) -> bool:
    """Wait for the cookies of ``roots``; a path in no root (None) waits for every root."""
    if None in roots:
        roots = set(ctx.engine.roots)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bool] = loop.create_future()

    def settle(ok: bool) -> None:
        if not future.done():
            future.set_result(ok)

    def done(ok: bool) -> None:
        loop.call_soon_threadsafe(settle, ok)

    started = time.perf_counter()
    cancel = ctx.engine.sync((r for r in roots if r is not None), done)
    try:
        ok = await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        cancel()
        return False
    ctx.metrics.sync_seconds.observe(time.perf_counter() - started)
    return ok


async def _engine_call(
    fn: Callable[[str, Callable[[BaseException | None], None]], None], root: str
) -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[BaseException | None] = loop.create_future()

    def done(exc: BaseException | None) -> None:
        loop.call_soon_threadsafe(future.set_result, exc)

    fn(root, done)
    exc = await future
    if isinstance(exc, FreshdError):
        raise ApiError(409, "conflict", str(exc))
    if exc is not None:
        raise ApiError(400, "bad_root", f"{root}: {exc}")


async def _stream(ctx: Context) -> AsyncIterator[str]:
    q: asyncio.Queue[str | None] = asyncio.Queue(maxsize=_SSE_QUEUE)
    ctx.loop = asyncio.get_running_loop()
    ctx.subscribers.add(q)
    try:
        yield f"event: hello\ndata: {json.dumps({'version': __version__})}\n\n"
        while not ctx.closing:
            try:
                message = await asyncio.wait_for(q.get(), _SSE_KEEPALIVE_SECONDS)
            except asyncio.TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if message is None:
                return
            yield message
    finally:
        ctx.subscribers.discard(q)


# -- the guard: body limit, token, API version header, metrics ---------------------------

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _Guard:
    """Pure ASGI middleware in front of every route."""

    def __init__(self, app: Any, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        self.ctx.loop = self.ctx.loop or asyncio.get_running_loop()
        started = time.perf_counter()
        route = scope["path"] if scope["path"].startswith(("/v1/", "/metrics")) else "other"
        status_seen = [0]

        async def send_with_header(message: MutableMapping[str, Any]) -> None:
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
        else:
            await self.app(scope, receive, send_with_header)
        self.ctx.metrics.queries.labels(route, str(status_seen[0])).inc()
        self.ctx.metrics.latency.labels(route).observe(time.perf_counter() - started)

    def _deny(self, scope: dict[str, Any]) -> JSONResponse | None:
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return _error(413, "too_large", f"request bodies are limited to {MAX_BODY} bytes")
        if b"transfer-encoding" in headers:  # a body of unknown size: refused, not buffered
            return _error(411, "length_required", "send request bodies with Content-Length")
        server = scope.get("server")
        over_tcp = server is not None and server[1] is not None
        if over_tcp:
            token = self.ctx.token
            given = headers.get(b"authorization", b"")
            if token is None or not hmac.compare_digest(given, f"Bearer {token}".encode()):
                return _error(401, "unauthorized", "TCP clients must send Authorization: Bearer")
        return None
