"""The lean path: the hot routes answered without FastAPI.

FastAPI's routing and validation cost ~150 µs a request (issue 4), so the guard in front
of it (``freshd.guard``) hands ``GET /v1/health``, ``POST /v1/fresh``, ``POST /v1/sync``
and ``GET /v1/packages/lookup`` to ``answer``: a well-formed request is parsed here with
the stdlib and answered by the same route logic as FastAPI's (``freshd.queries``);
anything else goes on to FastAPI, whose validation words the error. Health and these
routes are also what a starting daemon answers before FastAPI is loaded.

Each parser accepts only requests its pydantic model accepts, read the same way (the
same JSON decoder, the same limits); what it returns None for goes on to FastAPI, so
every error answer still comes from one place. tests/test_app.py checks that both ways
answer byte for byte the same.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Send

from freshd import queries
from freshd.queries import (
    DEFAULT_TIMEOUT_MS,
    MAX_DIGEST_CHARS,
    MAX_ITEMS,
    MAX_NAME_CHARS,
    MAX_PATH_CHARS,
    MAX_TIMEOUT_MS,
    ApiError,
    Context,
    Item,
    PathSafeJSONResponse,
    error_response,
)

_FRESH_FIELDS = frozenset({"items", "sync", "timeout_ms"})
_ITEM_FIELDS = frozenset({"path", "digest", "scope"})
_SYNC_FIELDS = frozenset({"paths", "timeout_ms"})
_SCOPES = ("tree", "meta")


def _json_object(body: bytes, fields: frozenset[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if type(data) is dict and data.keys() <= fields else None


def _is_path(value: object) -> TypeGuard[str]:
    return type(value) is str and len(value) <= MAX_PATH_CHARS


def _is_timeout(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_TIMEOUT_MS


def _fresh_args(body: bytes) -> tuple[list[Item], bool, int] | None:
    """A FreshRequest as (items, sync, timeout_ms), or None."""
    data = _json_object(body, _FRESH_FIELDS)
    if data is None:
        return None
    items = data.get("items")
    sync = data.get("sync", False)
    timeout_ms = data.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if type(items) is not list or len(items) > MAX_ITEMS:
        return None
    if type(sync) is not bool or not _is_timeout(timeout_ms):
        return None
    wanted: list[Item] = []
    for item in items:
        if type(item) is not dict or not item.keys() <= _ITEM_FIELDS:
            return None
        path, digest, scope = item.get("path"), item.get("digest"), item.get("scope")
        # Non-ASCII digests are left to pydantic, which refuses those it cannot measure.
        if not _is_path(path) or type(digest) is not str or not digest.isascii():
            return None
        if len(digest) > MAX_DIGEST_CHARS or (scope is not None and scope not in _SCOPES):
            return None
        wanted.append((path, digest, scope))
    return wanted, sync, timeout_ms


def _sync_args(body: bytes) -> tuple[list[str], int] | None:
    """A SyncRequest as (paths, timeout_ms), or None."""
    data = _json_object(body, _SYNC_FIELDS)
    if data is None:
        return None
    paths = data.get("paths", [])
    timeout_ms = data.get("timeout_ms", DEFAULT_TIMEOUT_MS)
    if type(paths) is not list or len(paths) > MAX_ITEMS or not _is_timeout(timeout_ms):
        return None
    if not all(_is_path(p) for p in paths):
        return None
    return paths, timeout_ms


def _lookup_args(query: bytes) -> tuple[str | None, str | None] | None:
    """The (path, name) of a lookup that gives exactly one of them, or None."""
    # as starlette reads a query string; a repeated or extra key goes on to FastAPI
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    if len(pairs) != 1:
        return None
    key, value = pairs[0]
    if key == "path" and len(value) <= MAX_PATH_CHARS:
        return value, None
    if key == "name" and len(value) <= MAX_NAME_CHARS:
        return None, value
    return None


async def _fresh(ctx: Context, _query: bytes, body: bytes) -> dict[str, Any] | None:
    args = _fresh_args(body)
    return None if args is None else await queries.fresh(ctx, *args)


async def _sync(ctx: Context, _query: bytes, body: bytes) -> dict[str, Any] | None:
    args = _sync_args(body)
    return None if args is None else await queries.sync_paths(ctx, *args)


async def _health(ctx: Context, _query: bytes, _body: bytes) -> dict[str, Any] | None:
    # No input, so nothing to leave to FastAPI. It counts every package record: off the
    # event loop, as FastAPI runs its plain ``def`` route, so hot queries do not wait.
    return await asyncio.to_thread(queries.health, ctx)


async def _lookup(ctx: Context, query: bytes, _body: bytes) -> dict[str, Any] | None:
    args = _lookup_args(query)
    return None if args is None else queries.lookup(ctx, *args)


LeanRoute = Callable[[Context, bytes, bytes], Awaitable[dict[str, Any] | None]]
"""Parses (query string, body) and answers, or returns None to leave the request to FastAPI."""

LEAN_ROUTES: dict[tuple[str, str], LeanRoute] = {
    ("GET", "/v1/health"): _health,
    ("POST", "/v1/fresh"): _fresh,
    ("POST", "/v1/sync"): _sync,
    ("GET", "/v1/packages/lookup"): _lookup,
}
"""The lean routes by (method, path)."""


async def answer(
    route: LeanRoute,
    ctx: Context,
    fallback: ASGIApp,
    scope: dict[str, Any],
    receive: Receive,
    send: Send,
) -> None:
    """Answer from ``route``, or hand the request (its body replayed) to ``fallback``."""
    body = await _read_body(receive) if scope["method"] == "POST" else b""
    if body is None:
        return  # the client went away
    try:
        content = await route(ctx, scope["query_string"], body)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message)
    else:
        if content is None:
            await fallback(scope, _replay(body, receive), send)
            return
        response = PathSafeJSONResponse(content)
    await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body (the guard has checked its size), None on a disconnect."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once more, then what the client sends next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
