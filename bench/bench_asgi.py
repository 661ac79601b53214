"""The daemon's HTTP app in-process: ``POST /v1/fresh`` straight into the ASGI app.

One event loop, one index with one clean package, an engine stand-in that is ready; each
request is the scope, body and replies a server passes (no socket, no client), so the
figure is the app's own cost, beside two peers answering the same question from the same
index with the same route logic (``freshd.api.queries.fresh``):

- ``freshd app``: what the daemon serves, the guard in front of the FastAPI app, whose
  hot routes are ``ModelRoute``s (pydantic validates the body's model, the answer is
  sent encoded);
- ``FastAPI default route``: the idiomatic FastAPI route for the same models (the body
  as a parameter, ``response_model`` serialising the answer), behind the same guard;
- ``bare ASGI``: the floor, an ASGI function that reads the body, decodes it with
  ``json`` and answers, with no validation at all.

Timings are a report, never an assertion. Usage::

    python bench/bench_asgi.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.responses import Response
from starlette.types import ASGIApp

from freshd.api import queries
from freshd.api.app import FreshRequest, FreshResponse, create_app
from freshd.api.guard import Guard
from freshd.api.queries import Context
from freshd.index.writer import Index
from freshd.metrics import Metrics
from freshd_client.spec import schema as sc

TREE = "b3t2:" + "ab" * 32


@dataclass
class _Root:
    mode: str = "watching"


@dataclass
class ReadyEngine:
    """What the route reads of the engine: ready, one root, nothing pending."""

    root: str
    status: str = "ready"
    alive: bool = True
    last_error: str | None = None
    progress: tuple[int, int] | None = None

    @property
    def roots(self) -> dict[str, _Root]:
        return {self.root: _Root()}

    def root_of(self, path: str) -> str | None:
        return self.root if path.startswith(self.root + "/") else None

    def pending(self) -> int:
        return 0

    def problems(self) -> dict[str, str]:
        return {}

    def sync(self, _roots: Any, done: Callable[[bool], None]) -> Callable[[], None]:
        done(True)
        return lambda: None


def fastapi_default(ctx: Context) -> ASGIApp:
    """The idiomatic FastAPI route for ``POST /v1/fresh``, behind the same guard."""
    app = FastAPI()

    @app.post("/v1/fresh", response_model=FreshResponse)
    async def fresh(body: FreshRequest) -> dict[str, Any]:
        items = [(item.path, item.digest, item.scope) for item in body.items]
        return await queries.fresh(ctx, items, body.sync, body.timeout_ms)

    return Guard(app, ctx)


def bare(ctx: Context) -> ASGIApp:
    """The floor: read, decode, answer; nothing validated."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        data = json.loads(body)
        items = [(i["path"], i["digest"], i.get("scope")) for i in data["items"]]
        answer = await queries.fresh(ctx, items, False, 1000)
        await Response(json.dumps(answer), media_type="application/json")(scope, receive, send)

    return app


async def request(app: ASGIApp, body: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/fresh",
        "raw_path": b"/v1/fresh",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost"), (b"content-length", str(len(body)).encode())],
        "server": ("/run/freshd.sock", None),
        "client": None,
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    status = [0]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    await app(scope, receive, send)
    return status[0]


async def sample(app: ASGIApp, body: bytes, runs: int) -> list[float]:
    assert await request(app, body) == 200
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await request(app, body)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    runs, rounds = (500, 2) if args.quick else (3000, 5)
    with tempfile.TemporaryDirectory(prefix="fdasgi") as work:
        root = os.path.join(work, "root")
        package = os.path.join(root, "core")
        os.makedirs(package)
        index = Index(os.path.join(work, "index"), map_size=1 << 22)
        record = sc.PackageRecord(package, "core", root, "clean", TREE, None, 3, 1, 1)
        index.write(lambda txn: index.put_package(txn, record, None))
        engine: Any = ReadyEngine(root)
        ctx = Context(engine=engine, index=index, metrics=Metrics(), socket="/run/freshd.sock")
        body = json.dumps({"items": [{"path": package, "digest": TREE}]}).encode()
        apps = {
            "freshd app (ModelRoute)": create_app(ctx),
            "FastAPI default route": fastapi_default(ctx),
            "bare ASGI (the floor)": bare(ctx),
        }
        times: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(rounds):  # alternated, so that a busy moment hits every app
            for name, app in apps.items():
                times[name] += asyncio.run(sample(app, body, runs))
        index.close()
    rows = {
        name: {
            "p50_us": statistics.median(t) * 1e6,
            "p99_us": statistics.quantiles(t, n=100)[98] * 1e6,
            "requests": len(t),
        }
        for name, t in times.items()
    }
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("POST /v1/fresh in-process (one item), median and p99")
    for name, row in rows.items():
        print(f"  {name:<26} {row['p50_us']:7.0f} µs  {row['p99_us']:7.0f} µs  ({row['requests']})")


if __name__ == "__main__":
    main()
