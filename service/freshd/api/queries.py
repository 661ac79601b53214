"""What the HTTP API answers, however the request was parsed.

The route logic behind DESIGN.md's routes, for the FastAPI app (``freshd.api.app``) and
the guard in front of it (``freshd.api.guard``, which answers health): the daemon's shared
state (``Context``), the request limits, the JSON body of an ``ApiError``, and one
function per route. Queries read LMDB in the event loop (a read transaction costs
microseconds); nothing a client sends makes the daemon read a file: paths are looked up
in the index, and resolved on disk only when they lie inside a root.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.responses import JSONResponse  # FastAPI's is this one: no FastAPI import

from freshd import __version__
from freshd.crawl.indexer import canonical_root
from freshd.engine import Engine
from freshd.errors import ApiError
from freshd.index.writer import Index
from freshd.metrics import Metrics
from freshd.recent import RecentLog
from freshd_client.errors import FreshdError
from freshd_client.spec import digest as dg
from freshd_client.spec import schema as sc

MAX_ITEMS = 10_000
MAX_PATH_CHARS = 4096
MAX_NAME_CHARS = 256
MAX_DIGEST_CHARS = 80
MAX_TIMEOUT_MS = 60_000
DEFAULT_TIMEOUT_MS = 1000
_SSE_QUEUE = 1024
_SSE_KEEPALIVE_SECONDS = 15.0

Scope = Literal["tree", "meta"]


# -- answers and errors ----------------------------------------------------------------


class PathSafeJSONResponse(JSONResponse):
    """JSON that can carry any path. A name that is not UTF-8 reaches Python as surrogate
    escapes (``os.fsdecode``), which UTF-8 cannot encode: such an answer is sent with
    ``\\udcXX`` escapes instead, and ``os.fsencode(json.loads(...))`` gives the bytes back."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The 4xx answer ``{"error": {"code", "message"}}``."""
    return PathSafeJSONResponse({"error": {"code": code, "message": message}}, status_code=status)


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
    recent: RecentLog = field(default_factory=RecentLog)
    """The daemon's recent warnings and errors (health's ``recent``)."""

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


# -- what the routes answer: one function each ----------------------------------------

Item = tuple[str, str, Scope | None]
"""A FreshItem as (path, digest, scope)."""


def health(ctx: Context) -> dict[str, Any]:
    """A Health answer, its fields in the model's order."""
    engine = ctx.engine
    packages, files = totals(ctx.index)
    progress = engine.progress
    reasons = engine.problems()
    degraded = engine.status == "ready" and bool(reasons)
    return {
        "status": "degraded" if degraded else engine.status,
        "version": __version__,
        "api_version": sc.API_VERSION,
        "pid": os.getpid(),
        "roots": sorted(engine.roots),
        "watch": {r: s.mode for r, s in engine.roots.items()},
        "reasons": reasons,
        "packages": packages,
        "files": files,
        "pending": engine.pending(),
        "progress": {"done": progress[0], "total": progress[1]} if progress else None,
        "index": ctx.index.path,
        "socket": ctx.socket,
        "error": engine.last_error,
        "recent": ctx.recent.records(),
    }


def lookup(ctx: Context, path: str | None, name: str | None) -> dict[str, Any]:
    """A PackageInfo."""
    if (path is None) == (name is None):
        raise ApiError(400, "bad_request", "give exactly one of path= or name=")
    record = _by_name(ctx, name) if name is not None else _by_path(ctx, path or "")
    if record is None:
        raise ApiError(404, "not_found", f"{path or name} is not an indexed package")
    return record.info()


async def fresh(ctx: Context, items: list[Item], sync: bool, timeout_ms: int) -> dict[str, Any]:
    """A FreshResponse."""
    wanted = [(path, _scope_of(digest, scope)) for path, digest, scope in items]
    engine = ctx.engine
    ready = engine.status == "ready" and engine.alive and not engine.last_error
    synced = False
    if sync and ready:
        roots = {_root_for(ctx, path) for path, _raw in wanted}
        synced = await _sync(ctx, roots, timeout_ms / 1000)
    # A sync that did not complete answers nothing: "fast" is not what was asked.
    trusted = ready and (synced or not sync)
    results = ctx.index.read(
        lambda txn: [
            _freshness(path, _by_path(ctx, path, txn=txn), scope, raw, trusted)
            for path, (scope, raw) in wanted
        ]
    )
    return {"results": results, "synced": synced}


async def sync_paths(ctx: Context, paths: list[str], timeout_ms: int) -> dict[str, Any]:
    """A SyncAnswer."""
    engine = ctx.engine
    if engine.status != "ready" or not engine.alive:
        return {"synced": False}
    roots: set[str | None] = {_root_for(ctx, p) for p in paths} if paths else {None}
    return {"synced": await _sync(ctx, roots, timeout_ms / 1000)}


# -- route helpers --------------------------------------------------------------------


def totals(index: Index) -> tuple[int, int]:
    """The number of packages and of files in the index."""

    def count(txn: Any) -> tuple[int, int]:
        files = packages = 0
        for _key, value in txn.cursor(db=index.dbs[sc.DB_PACKAGES]):
            packages += 1
            files += sc.PACKAGE_HEAD.unpack_from(value)[3]
        return packages, files

    return index.read(count)


def _scope_of(digest: str, asked: Scope | None) -> tuple[dg.Scope, bytes]:
    try:
        scope, raw = dg.parse(digest)
    except ValueError as exc:
        raise ApiError(422, "bad_digest", f"{digest!r}: {exc}") from None
    if asked is not None and asked != scope:
        raise ApiError(422, "bad_digest", f"{digest!r} is a {scope} digest, not {asked}")
    return scope, raw


def _normalized(path: str) -> str:
    if not path or "\x00" in path or not os.path.isabs(path):
        raise ApiError(400, "bad_path", f"{path!r} is not an absolute path")
    return os.path.normpath(path)


def _by_path(ctx: Context, path: str, *, txn: Any = None) -> sc.PackageRecord | None:
    """The record of ``path``; resolved on disk only when it lies inside a root."""
    normal = _normalized(path)

    def find(txn: Any) -> sc.PackageRecord | None:
        db = ctx.index.dbs[sc.DB_PACKAGES]
        record = sc.get_package(txn, db, normal)
        if record is None and ctx.engine.root_of(normal) is not None:
            real = os.path.realpath(normal)
            if real != normal:
                record = sc.get_package(txn, db, real)
        return record

    return find(txn) if txn is not None else ctx.index.read(find)


def _by_name(ctx: Context, name: str) -> sc.PackageRecord | None:
    from freshd_client.content.project import normalize_name

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
) -> dict[str, Any]:
    """One FreshResult."""
    if record is None:
        return {"path": path, "fresh": None, "state": "unknown", "digest": None}
    current = record.tree if scope == "tree" else record.meta
    if not ready or record.state != "clean" or current is None:
        return {"path": path, "fresh": None, "state": record.state, "digest": None}
    same = dg.parse(current)[1] == raw
    return {"path": path, "fresh": same, "state": record.state, "digest": current}


def canonical(path: str) -> str:
    """A root's canonical path; ApiError when it is not an absolute path to a directory."""
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


async def engine_call(
    fn: Callable[[str, Callable[[BaseException | None], None]], None], root: str
) -> None:
    """Run a root command on the engine thread and wait for it; its failure as ApiError."""
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


async def stream(ctx: Context) -> AsyncIterator[str]:
    """The server-sent events of ``GET /v1/events``, until the daemon closes."""
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
