"""The HTTP app in-process: the guard and the FastAPI app over one index and a fake engine.

Every request — well formed, malformed (tests/api_cases.py), coerced by pydantic's lax
mode, or generated — gets a JSON answer, never a 5xx; a refusal is the 4xx error body of
DESIGN.md. Every request but health is parsed by FastAPI alone (issue 22: no second
parser). tests/test_daemon.py sends the malformed ones to a real daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_cases import BAD_REQUESTS, NO_DIGEST, fresh_body
from freshd.api.app import Context, Health, create_app
from freshd.index.writer import Index
from freshd.metrics import Metrics
from freshd_client.spec import schema as sc

TREE = "b3t2:" + "ab" * 32
META = "b3m2:" + "cd" * 32
OTHER = "b3t2:" + "ef" * 32

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


@dataclass
class RootMode:
    mode: str = "watching"
    reason: str | None = None


@dataclass
class FakeEngine:
    """What the routes read of the engine; ``sync`` acknowledges every cookie at once."""

    roots: dict[str, RootMode]
    status: str = "ready"
    alive: bool = True
    last_error: str | None = None
    progress: tuple[int, int] | None = None
    synced: list[list[str]] = field(default_factory=list)

    def pending(self) -> int:
        return 0

    def problems(self) -> dict[str, str]:
        return {r: s.reason for r, s in self.roots.items() if s.reason}

    def root_of(self, path: str) -> str | None:
        for root in self.roots:
            if path == root or path.startswith(root.rstrip("/") + "/"):
                return root
        return None

    def sync(self, roots: Any, done: Callable[[bool], None]) -> Callable[[], None]:
        self.synced.append(sorted(roots))
        done(True)
        return lambda: None


@dataclass
class Apps:
    ctx: Context
    engine: FakeEngine
    root: Path
    app: Any

    def ask(self, method: str, target: str, body: bytes | None = None) -> Answer:
        """The app's answer, checked to be JSON with the API version header."""
        answer = ask(self.app, method, target, body)
        status, headers, raw = answer
        assert (b"freshd-api", b"1") in headers
        data = json.loads(raw)
        if status >= 400:
            assert set(data) == {"error"} and set(data["error"]) == {"code", "message"}, raw
        return answer


def ask(app: Any, method: str, target: str, body: bytes | None = None, chunks: int = 1) -> Answer:
    """One request straight into the ASGI app, as uvicorn passes it from the Unix socket."""
    path, _, query = target.partition("?")
    headers = [(b"host", b"localhost")]
    if body is not None:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode("utf-8", "surrogatepass"),  # bytes as they came
        "root_path": "",
        "headers": headers,
        "server": ("/run/freshd.sock", None),
        "client": None,
    }
    data = body or b""
    size = -(-len(data) // chunks) or 1
    parts = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": part, "more_body": n < len(parts) - 1}
        for n, part in enumerate(parts)
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client keeps the connection open
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start, *rest = sent
    assert start["type"] == "http.response.start"
    return start["status"], list(start["headers"]), b"".join(m.get("body", b"") for m in rest)


def record(path: str, **fields: Any) -> sc.PackageRecord:
    values: dict[str, Any] = {
        "path": path,
        "name": os.path.basename(path),
        "root": os.path.dirname(path),
        "state": "clean",
        "tree": TREE,
        "meta": META,
        "files": 3,
        "generation": 1,
        "updated_ns": 1,
        **fields,
    }
    return sc.PackageRecord(**values)


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    base = tmp_path_factory.mktemp("app")
    root = base / "root"
    for name in ("core", "dirty", "broken", "twin1", "twin2", "café"):
        (root / name).mkdir(parents=True)
    os.symlink(root / "core", root / "core-link")
    records = [
        record(f"{root}/core"),
        record(f"{root}/dirty", state="dirty", tree=None),
        record(f"{root}/broken", state="error", error="cannot read src/x.py: EACCES"),
        record(f"{root}/twin1", name="twin"),
        record(f"{root}/twin2", name="twin"),
        record(f"{root}/café"),
        record(f"{root}/caf" + os.fsdecode(b"\xe9"), name="latin1"),
    ]
    index = Index(str(base / "index"), map_size=1 << 22)

    def put(txn: Any) -> None:
        for r in records:
            index.put_package(txn, r, None)

    index.write(put)
    engine = FakeEngine(roots={str(root): RootMode()})
    ctx = Context(engine=engine, index=index, metrics=Metrics(), socket="/run/freshd.sock")
    try:
        yield Apps(ctx, engine, root, create_app(ctx))
    finally:
        index.close()


@pytest.fixture(autouse=True)
def _ready(apps: Apps) -> Iterator[None]:
    yield
    apps.engine.status, apps.engine.alive, apps.engine.last_error = "ready", True, None


def fresh(*items: dict[str, Any], **fields: Any) -> bytes:
    return json.dumps({"items": list(items), **fields}).encode()


# -- the same answers ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_a_bad_request_gets_an_error_body(apps: Apps, name: str) -> None:
    method, target, body = BAD_REQUESTS[name]
    status, _headers, raw = apps.ask(method, target, body)
    assert 400 <= status < 500, (status, raw)


def test_a_digest_of_another_format_is_refused_naming_both(apps: Apps) -> None:
    status, _headers, raw = apps.ask(*BAD_REQUESTS["digest-old-format"])
    error = json.loads(raw)["error"]
    assert (status, error["code"]) == (422, "bad_digest")
    assert "format 1" in error["message"] and "format 2" in error["message"]


def _good_requests(root: Path) -> dict[str, tuple[str, str, bytes | None]]:
    core, latin1 = f"{root}/core", f"{root}/caf" + os.fsdecode(b"\xe9")
    return {
        "fresh": ("POST", "/v1/fresh", fresh({"path": core, "digest": TREE})),
        "stale": ("POST", "/v1/fresh", fresh({"path": core, "digest": OTHER, "scope": "tree"})),
        "meta": ("POST", "/v1/fresh", fresh({"path": core, "digest": META, "scope": "meta"})),
        "scope-null": ("POST", "/v1/fresh", fresh({"path": core, "digest": TREE, "scope": None})),
        "through-a-link": (
            "POST",
            "/v1/fresh",
            fresh({"path": f"{root}/core-link", "digest": TREE}),
        ),
        "not-normal": ("POST", "/v1/fresh", fresh({"path": f"{root}//x/../core/", "digest": TREE})),
        "dirty": ("POST", "/v1/fresh", fresh({"path": f"{root}/dirty", "digest": TREE})),
        "error": ("POST", "/v1/fresh", fresh({"path": f"{root}/broken", "digest": TREE})),
        "unknown": ("POST", "/v1/fresh", fresh_body()),
        "outside-the-roots": ("POST", "/v1/fresh", fresh({"path": "/etc", "digest": TREE})),
        "unicode-path": ("POST", "/v1/fresh", fresh({"path": f"{root}/café", "digest": TREE})),
        "not-utf8-path": ("POST", "/v1/fresh", fresh({"path": latin1, "digest": TREE})),
        "odd-characters": (
            "POST",
            "/v1/fresh",
            fresh({"path": "/r/\x7f\x1f\n\u2028</\U0001f600", "digest": TREE}),
        ),
        "many": (
            "POST",
            "/v1/fresh",
            fresh(*[{"path": core, "digest": d} for d in (TREE, META, OTHER, NO_DIGEST)]),
        ),
        "no-items": ("POST", "/v1/fresh", fresh()),
        "synced": ("POST", "/v1/fresh", fresh({"path": core, "digest": TREE}, sync=True)),
        "sync-timeout-0": (
            "POST",
            "/v1/fresh",
            fresh({"path": core, "digest": TREE}, sync=True, timeout_ms=0),
        ),
        "sync-outside": ("POST", "/v1/fresh", fresh({"path": "/etc", "digest": TREE}, sync=True)),
        "max-timeout": ("POST", "/v1/fresh", fresh(timeout_ms=60_000)),
        "max-path": ("POST", "/v1/fresh", fresh({"path": "/" + "a" * 4095, "digest": TREE})),
        "duplicate-keys": ("POST", "/v1/fresh", b'{"items": 3, "items": []}'),
        "whitespace-around": ("POST", "/v1/fresh", b' \n{"items" : [ ] }\t'),
        # pydantic's lax mode coerces these
        "sync-as-int": ("POST", "/v1/fresh", fresh(sync=1)),
        "sync-as-string": ("POST", "/v1/fresh", fresh(sync="yes")),
        "timeout-as-float": ("POST", "/v1/fresh", fresh(timeout_ms=5.0)),
        "timeout-as-bool": ("POST", "/v1/fresh", fresh(timeout_ms=True)),
        "timeout-as-string": ("POST", "/v1/fresh", fresh(timeout_ms="5")),
        "timeout-nan": ("POST", "/v1/fresh", b'{"items": [], "timeout_ms": NaN}'),
        "digest-non-ascii": ("POST", "/v1/fresh", fresh({"path": core, "digest": "b3t2:é"})),
        "digest-surrogate": ("POST", "/v1/fresh", fresh({"path": core, "digest": "\udcff"})),
        "sync-paths": ("POST", "/v1/sync", json.dumps({"paths": [core, "/etc"]}).encode()),
        "sync-every-root": ("POST", "/v1/sync", b"{}"),
        "sync-no-paths": ("POST", "/v1/sync", b'{"paths": [], "timeout_ms": 0}'),
        "sync-timeout-as-float": ("POST", "/v1/sync", b'{"timeout_ms": 10.0}'),
        "lookup-path": ("GET", f"/v1/packages/lookup?path={core}", None),
        "lookup-link": ("GET", f"/v1/packages/lookup?path={root}/core-link", None),
        "lookup-escaped": ("GET", f"/v1/packages/lookup?path={root}/caf%C3%A9", None),
        "lookup-not-utf8": ("GET", f"/v1/packages/lookup?path={root}/caf%E9", None),
        "lookup-plus": ("GET", "/v1/packages/lookup?path=/a+b", None),
        "lookup-name": ("GET", "/v1/packages/lookup?name=Core", None),
        "lookup-ambiguous": ("GET", "/v1/packages/lookup?name=twin", None),
        "lookup-missing": ("GET", f"/v1/packages/lookup?path={root}/nothing", None),
        "lookup-error": ("GET", f"/v1/packages/lookup?path={root}/broken", None),
        "lookup-blank-name": ("GET", "/v1/packages/lookup?name", None),
        "lookup-extra-key": ("GET", f"/v1/packages/lookup?path={core}&x=1", None),
        "lookup-both": ("GET", f"/v1/packages/lookup?name=core&path={core}", None),
        "lookup-max-path": ("GET", "/v1/packages/lookup?path=/" + "a" * 4095, None),
    }


GOOD = list(_good_requests(Path("/x")))


@pytest.mark.parametrize("name", GOOD)
def test_a_request_gets_an_answer(apps: Apps, name: str) -> None:
    method, target, body = _good_requests(apps.root)[name]
    status, _headers, raw = apps.ask(method, target, body)
    assert status < 500, raw


@pytest.mark.parametrize("state", ["indexing", "dead", "failed"])
@pytest.mark.parametrize("name", ["fresh", "synced", "sync-paths", "lookup-path"])
def test_an_engine_that_is_not_ready_gets_the_same_answers(
    apps: Apps, state: str, name: str
) -> None:
    engine = apps.engine
    if state == "indexing":
        engine.status = "indexing"
    elif state == "dead":
        engine.alive = False
    else:
        engine.last_error = "the index cannot be written"
    method, target, body = _good_requests(apps.root)[name]
    _status, _headers, raw = apps.ask(method, target, body)
    if name in ("fresh", "synced"):
        assert json.loads(raw)["results"][0]["fresh"] is None


def test_the_answers_themselves(apps: Apps) -> None:
    """The control: what both ways answer is right, not only equal."""
    core = f"{apps.root}/core"
    status, headers, raw = apps.ask(
        "POST",
        "/v1/fresh",
        fresh({"path": core, "digest": TREE}, {"path": f"{apps.root}/dirty", "digest": TREE}),
    )
    assert status == 200
    assert headers == [
        (b"content-length", str(len(raw)).encode()),
        (b"content-type", b"application/json"),
        (b"freshd-api", b"1"),
    ]
    assert json.loads(raw) == {
        "results": [
            {"path": core, "fresh": True, "state": "clean", "digest": TREE},
            {"path": f"{apps.root}/dirty", "fresh": None, "state": "dirty", "digest": None},
        ],
        "synced": False,
    }
    latin1 = f"{apps.root}/caf" + os.fsdecode(b"\xe9")
    _status, _headers, raw = apps.ask("POST", "/v1/fresh", fresh({"path": latin1, "digest": OTHER}))
    assert os.fsencode(json.loads(raw)["results"][0]["path"]) == os.fsencode(latin1)
    _status, _headers, raw = apps.ask("POST", "/v1/sync", b'{"paths": ["/etc"]}')
    assert json.loads(raw) == {"synced": True}
    assert apps.engine.synced[-2:] == [[str(apps.root)]] * 2  # a path in no root: every root
    status, _headers, raw = apps.ask("GET", "/v1/packages/lookup?name=latin1")
    assert (status, json.loads(raw)["path"]) == (200, latin1)


# -- generated requests ------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)
_paths = (
    st.sampled_from(["/r/core", "/r/core-link", "core", "", "/a\x00b", "/" + "a" * 4096, "/é"])
    | st.text(max_size=8)
    | _json
)
_digests = st.sampled_from([TREE, META, OTHER, "nope", "b3t2:" + "Z" * 64, "\udcff", "b3t2:é"])
_items = st.fixed_dictionaries(
    {"path": _paths, "digest": _digests | st.text(max_size=8) | _json},
    optional={"scope": st.sampled_from(["tree", "meta", "both", None]) | _json, "x": _json},
)
_fresh_bodies = st.fixed_dictionaries(
    {"items": st.lists(_items, max_size=3) | _json},
    optional={
        "sync": st.booleans() | _json,
        "timeout_ms": st.integers(-2, 60_002) | _json,
        "consistency": _json,
    },
)
_sync_bodies = st.fixed_dictionaries(
    {},
    optional={
        "paths": st.lists(_paths, max_size=3) | _json,
        "timeout_ms": st.integers(-2, 60_002) | _json,
        "x": _json,
    },
)
_queries = st.lists(
    st.tuples(
        st.sampled_from(["path", "name", "x", "path "]),
        st.text(max_size=8) | st.text(max_size=8).map(lambda v: quote(v, safe="/")),
    ),
    max_size=3,
).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))


# Well formed, with the paths and digests that matter.
_good_paths = st.sampled_from(
    ["/r/core", "/r/core-link", "/r/dirty", "/r/café", "/r/x/../core/", "/etc", "/" + "a" * 4095]
) | st.text(max_size=8).map(lambda t: "/r/" + t)
_good_items = st.fixed_dictionaries(
    {"path": _good_paths, "digest": st.sampled_from([TREE, META, OTHER, "nope", "b3m2:" + "0"])},
    optional={"scope": st.sampled_from(["tree", "meta", None])},
)
_good_fresh_bodies = st.fixed_dictionaries(
    {"items": st.lists(_good_items, max_size=3)},
    optional={"sync": st.booleans(), "timeout_ms": st.integers(0, 60_000)},
)
_good_sync_bodies = st.fixed_dictionaries(
    {}, optional={"paths": st.lists(_good_paths, max_size=3), "timeout_ms": st.integers(0, 5)}
)
_good_queries = st.one_of(
    _good_paths.map(lambda p: "path=" + quote(p, safe="/")),
    st.text(max_size=8).map(lambda n: "name=" + quote(n)),
)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    request=st.one_of(
        st.one_of(_good_fresh_bodies, _fresh_bodies, _json).map(
            lambda b: ("POST", "/v1/fresh", json.dumps(b).encode())
        ),
        st.one_of(_good_sync_bodies, _sync_bodies).map(
            lambda b: ("POST", "/v1/sync", json.dumps(b).encode())
        ),
        st.one_of(_good_queries, _queries).map(lambda q: ("GET", f"/v1/packages/lookup?{q}", None)),
    )
)
def test_generated_requests_get_answers(apps: Apps, request: tuple[str, str, bytes | None]) -> None:
    method, target, body = request
    # "/r/…" stands for the fixture's root
    target = target.replace("=/r/", f"={quote(str(apps.root))}/")
    if body is not None:
        body = body.replace(b'"/r/', json.dumps(f"{apps.root}/")[:-1].encode())
    status, _headers, raw = apps.ask(method, target, body)
    assert status < 500, raw


# -- the guard and the staged start ----------------------------------------------------


def test_every_request_but_health_is_parsed_by_fastapi(apps: Apps) -> None:
    """One parser: the guard answers health (no input) and hands everything else on."""
    app = create_app(apps.ctx)
    reached: list[str] = []
    fastapi = app.app

    async def spy(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await fastapi(scope, receive, send)

    app.app = spy
    requests = _good_requests(apps.root)
    for name in ("fresh", "sync-paths", "lookup-path", "sync-as-int"):
        ask(app, *requests[name])
    ask(app, *BAD_REQUESTS["malformed-json"])
    ask(app, "GET", "/v1/health")
    assert reached == ["/v1/fresh", "/v1/sync", "/v1/packages/lookup", "/v1/fresh", "/v1/fresh"]


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"status": "indexing", "progress": (3, 10)},
        {"status": "ready", "last_error": "cannot write index: no space left on device"},
        {"status": "starting", "roots": {"/b": RootMode("polling"), "/a": RootMode("missing")}},
        {"status": "ready", "roots": {"/b": RootMode("blind", "the watcher delivered no event")}},
    ],
)
def test_health_answers_the_engines_state(apps: Apps, state: dict[str, Any]) -> None:
    engine = FakeEngine(**{"roots": dict(apps.engine.roots), **state})
    ctx = Context(engine=engine, index=apps.ctx.index, metrics=Metrics(), socket="/s")
    app = create_app(ctx)
    answer = ask(app, "GET", "/v1/health")
    assert answer[0] == 200
    assert answer == ask(app, "GET", "/v1/health?unknown=1")
    health = json.loads(answer[2])
    assert list(health) == list(Health.model_fields)  # the documented model, in its order
    assert Health.model_validate(health).model_dump(mode="json") == health
    degraded = engine.status == "ready" and engine.problems()
    assert health["status"] == ("degraded" if degraded else engine.status)
    assert health["reasons"] == engine.problems() and health["packages"] == 7


def test_the_declared_routes_are_the_fastapi_apps(apps: Apps) -> None:
    from starlette.routing import Route

    from freshd.api.app import build_fastapi
    from freshd.api.guard import ROUTES

    app = build_fastapi(apps.ctx)
    assert {r.path for r in app.routes if isinstance(r, Route)} == ROUTES


def test_the_staged_app_answers_health_before_fastapi_is_built(apps: Apps) -> None:
    """The daemon's app: health answers without FastAPI; any other request builds it
    (once) and gets its answer."""
    from freshd.api.guard import staged_app

    app = staged_app(apps.ctx)
    assert ask(app, "GET", "/v1/health") == apps.ask("GET", "/v1/health")
    assert app.app is None  # not built
    fresh_request = _good_requests(apps.root)["fresh"]
    assert ask(app, *fresh_request) == apps.ask(*fresh_request)
    built = app.app
    assert built is not None and app.prepare().result() is built
    assert ask(app, "GET", "/v1/packages") == apps.ask("GET", "/v1/packages")
    assert app.app is built


def test_a_body_in_several_messages(apps: Apps) -> None:
    body = fresh(*[{"path": f"{apps.root}/core", "digest": TREE}] * 50)
    whole = ask(apps.app, "POST", "/v1/fresh", body)
    assert whole[0] == 200
    assert ask(apps.app, "POST", "/v1/fresh", body, chunks=7) == whole
    malformed = body[:-1]
    refused = ask(apps.app, "POST", "/v1/fresh", malformed, chunks=7)
    assert refused == ask(apps.app, "POST", "/v1/fresh", malformed)
    assert refused[0] == 422


def test_a_client_that_leaves_mid_body_is_let_go(apps: Apps) -> None:
    """The request ends with a 4xx (uvicorn drops it: nobody listens), nothing waits."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/fresh",
        "query_string": b"",
        "headers": [(b"content-length", b"100")],
        "server": ("/run/freshd.sock", None),
    }
    messages = [
        {"type": "http.request", "body": b'{"items": [', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(apps.app(scope, receive, send), 10))
    assert sent[0]["type"] == "http.response.start" and 400 <= sent[0]["status"] < 500


def test_answers_are_counted(apps: Apps) -> None:
    registry = apps.ctx.metrics.registry

    def count(route: str, status: str) -> float:
        value = registry.get_sample_value(
            "freshd_queries_total", {"route": route, "status": status}
        )
        return value or 0.0

    before = [
        count("/v1/fresh", "200"),
        count("/v1/sync", "422"),
        count("/v1/packages/lookup", "404"),
    ]
    requests = _good_requests(apps.root)
    ask(apps.app, *requests["fresh"])
    ask(apps.app, *BAD_REQUESTS["sync-timeout-negative"])
    ask(apps.app, *requests["lookup-missing"])
    after = [
        count("/v1/fresh", "200"),
        count("/v1/sync", "422"),
        count("/v1/packages/lookup", "404"),
    ]
    assert after == [n + 1 for n in before]


def test_unknown_paths_add_no_metric_series(apps: Apps) -> None:
    """The route label is a declared route or ``other``, never the path a client sent:
    requests to random paths must not grow the metrics without bound."""
    ctx = Context(engine=apps.engine, index=apps.ctx.index, metrics=Metrics(), socket="/s")
    app = create_app(ctx)
    registry = ctx.metrics.registry

    def labels() -> set[str]:
        return {
            sample.labels["route"]
            for family in registry.collect()
            if family.name in ("freshd_queries", "freshd_query_seconds")
            for sample in family.samples
        }

    def others() -> float:
        family = next(f for f in registry.collect() if f.name == "freshd_queries")
        return sum(
            s.value
            for s in family.samples
            if s.name == "freshd_queries_total" and s.labels["route"] == "other"
        )

    requests = _good_requests(apps.root)
    for name in ("fresh", "sync-paths", "lookup-path", "lookup-missing"):
        ask(app, *requests[name])
    ask(app, "GET", "/v1/no-such-route")
    routes = {"/v1/fresh", "/v1/sync", "/v1/packages/lookup", "other"}
    assert labels() == routes
    counted = others()
    asked = []
    for n in range(25):
        token = f"{n}-{os.urandom(4).hex()}"
        asked += [
            f"/v1/{token}",
            f"/v1/packages/{token}",
            f"/v1/packages/lookup/{token}",
            f"/v1/fresh/{token}",
            f"/metrics{token}",
            f"/{token}",
        ]
    asked += ["/", "/v1/", "/v1/fresh/", "/v1/packages/lookup/", "/V1/fresh", "/v1//fresh"]
    for target in asked:
        for method in ("GET", "POST", "DELETE"):
            status, _headers, _raw = ask(app, method, target, b"{}" if method == "POST" else None)
            assert 300 <= status < 500, (method, target, status)
    assert labels() == routes
    assert others() == counted + 3 * len(asked)
    _status, _headers, text = ask(app, "GET", "/metrics")
    assert b"no-such-route" not in text and asked[0].encode() not in text
    assert labels() == routes | {"/metrics"}


def test_the_schema_documents_the_hot_routes(apps: Apps) -> None:
    status, _headers, raw = ask(apps.app, "GET", "/openapi.json")
    assert status == 200
    spec = json.loads(raw)
    fresh_op = spec["paths"]["/v1/fresh"]["post"]
    assert fresh_op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FreshRequest"
    }
    assert {"422", "200"} <= set(fresh_op["responses"])
    assert "post" in spec["paths"]["/v1/sync"]
    assert {p["name"] for p in spec["paths"]["/v1/packages/lookup"]["get"]["parameters"]} == {
        "path",
        "name",
    }
    item = spec["components"]["schemas"]["FreshItem"]
    assert item["properties"]["path"]["maxLength"] == 4096
    assert item["additionalProperties"] is False
    answer = spec["paths"]["/v1/fresh"]["post"]["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/FreshResponse"}
    health = spec["paths"]["/v1/health"]["get"]["responses"]["200"]["content"]
    assert health["application/json"]["schema"] == {"$ref": "#/components/schemas/Health"}
