"""Hostile clients against a real daemon (issue 5, item 4).

The HTTP API is fuzzed from its own OpenAPI schema with schemathesis (positive and
negative cases for every operation but ``POST /v1/roots``, which would let the fuzzer
crawl ``/``, and the endless ``/v1/events`` stream): no 500, no hang, every error a JSON
4xx ``{"error": {"code", "message"}}``. Then what the fuzzer cannot see: paths outside
the roots (nothing outside is ever opened, watched from the test with inotify), huge
headers and URLs, clients that send their headers a byte at a time, many clients at
once, the modes of the socket and its directory after all of that, and the token on
every TCP route. ``tests/test_daemon.py`` already covers malformed bodies, oversized and
chunked bodies, non-loopback ``--tcp`` addresses and the token on two routes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import (  # noqa: E402
    DEADLINE,
    Daemon,
    Factory,
    assert_exact,
    http_request,
    make_package,
    oracle,
    tcp_address,
    write,
)

pytest_plugins = ["daemon_harness"]

NO_DIGEST = "b3t2:" + "0" * 64
FUZZ_EXAMPLES = 60  # per operation and generation mode


@dataclass
class Setup:
    daemon: Daemon
    root: Path
    outside: Path
    packages: list[Path]
    token: str
    tcp: tuple[str, int]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("clients")
    root = base / "root"
    packages = [make_package(root, "core"), make_package(root / "libs", "web")]
    outside = base / "outside"
    make_package(outside, "secret_pkg")
    write(outside / "secret.txt", "never read by the daemon\n")
    os.symlink(outside / "secret_pkg", root / "link_out")
    factory = Factory(base / "freshd")
    try:
        daemon = factory(root, args=["--workers", "2", "--tcp", "127.0.0.1:0"])
        token = (daemon.db / "token").read_text().strip()
        yield Setup(daemon, root, outside, packages, token, tcp_address(daemon))
    finally:
        factory.close()


def _check_answer(status: int, content_type: str, body: bytes, what: str) -> None:
    assert status < 500, f"{what}: HTTP {status} {body[:500]!r}"
    if status >= 400:
        assert content_type == "application/json", (what, content_type)
        error = json.loads(body)["error"]
        assert isinstance(error["code"], str) and error["code"], (what, body)
        assert isinstance(error["message"], str) and error["message"], (what, body)
    elif content_type == "application/json":
        json.loads(body)
    else:
        assert content_type.startswith("text/plain"), (what, content_type)  # /metrics


def _fuzz(
    strategy: Any, label: str, base_url: str, auth: dict[str, str], ran: dict[str, int]
) -> None:
    """Run one operation's generated cases against the daemon (counted in ``ran``)."""

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, headers=auth, timeout=DEADLINE)
        content_type = response.headers.get("content-type", [""])[0]
        _check_answer(response.status_code, content_type, response.content, f"{label}: {case!r}")
        ran[label] = ran.get(label, 0) + 1

    # No negative case exists for an operation without parameters or body.
    with contextlib.suppress(Unsatisfiable):
        fuzz()


def test_fuzz_the_api_from_its_schema(setup: Setup) -> None:
    spec = setup.daemon.call("GET", "/openapi.json")
    schema = schemathesis.openapi.from_dict(spec)
    base_url = "http://{}:{}".format(*setup.tcp)
    auth = {"Authorization": f"Bearer {setup.token}"}
    ran: dict[str, int] = {}
    skipped = {"POST /v1/roots", "GET /v1/events"}
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        if label in skipped:
            continue
        for mode in schemathesis.GenerationMode:
            _fuzz(operation.as_strategy(generation_mode=mode), label, base_url, auth, ran)
    total = sum(ran.values())
    print(f"schemathesis: {total} cases over {len(ran)} operations: {ran}")
    assert len(ran) >= 6, ran
    assert setup.daemon.health()["status"] == "ready"
    assert_exact(setup.daemon, setup.packages)


class _Opens(FileSystemEventHandler):
    def __init__(self) -> None:
        self.events: list[FileSystemEvent] = []

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.events.append(event)


def test_nothing_outside_the_roots_is_read_or_revealed(setup: Setup) -> None:
    """Queries naming paths outside every root, by traversal and through a link: none is
    answered from outside, nothing outside is opened (or written: no sync cookie)."""
    daemon, root, outside = setup.daemon, setup.root, setup.outside
    secret = outside / "secret_pkg"
    digest = oracle(secret)
    seen = _Opens()
    observer = Observer()
    observer.schedule(seen, str(outside), recursive=True)
    observer.start()
    try:
        paths = [
            secret,
            root / "../outside/secret_pkg",
            root / "libs/../../outside/secret_pkg",
            root / "link_out",
            Path("/" + "/".join([".."] * 30) + str(secret)),
            outside / "secret.txt",
            Path("/etc/passwd"),
            Path("/proc/self/environ"),
        ]
        for path in paths:
            for sync in (False, True):
                answer = daemon.fresh([(path, digest.tree), (path, digest.meta)], sync=sync)
                for result in answer["results"]:
                    assert (result["fresh"], result["state"], result["digest"]) == (
                        None,
                        "unknown",
                        None,
                    ), (path, result)
            lookup = daemon.request("GET", f"/v1/packages/lookup?path={path}")
            assert lookup.status == 404, lookup
            assert b"never read" not in lookup.raw and b"root:" not in lookup.raw
            synced = daemon.call("POST", "/v1/sync", {"paths": [str(path)], "timeout_ms": 5000})
            assert synced["synced"] is True
        # Removing a root that is not one, by traversal, changes nothing.
        removed = daemon.request("DELETE", f"/v1/roots?path={root}/../outside")
        assert removed.status == 409, removed
        assert daemon.health()["roots"] == [str(root)]
        listed = daemon.packages()
        assert not [p for p in listed if not p.startswith(str(root) + "/")], listed
    finally:
        observer.stop()
        observer.join()
    assert not seen.events, [repr(e) for e in seen.events[:5]]
    assert_exact(daemon, setup.packages)


def _raw(setup: Setup, data: bytes, timeout: float = DEADLINE) -> bytes:
    """Send raw bytes on the Unix socket; everything the daemon answers until it closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(setup.daemon.socket)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize(
    "name",
    ["huge-header", "many-headers", "huge-url", "garbage", "bad-method", "http2-preface"],
)
def test_malformed_requests_get_an_answer_or_a_close(setup: Setup, name: str) -> None:
    close = b"Connection: close\r\n\r\n"
    requests = {
        "huge-header": b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"a" * (1 << 20)
        + b"\r\n"
        + close,
        "many-headers": b"GET /v1/health HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: y\r\n" % i for i in range(20_000))
        + close,
        "huge-url": b"GET /v1/packages/lookup?path=/"
        + b"a" * (1 << 20)
        + b" HTTP/1.1\r\nHost: x\r\n"
        + close,
        "garbage": bytes(range(256)) * 64,
        "bad-method": b"FROB /v1/health HTTP/1.1\r\nHost: x\r\n" + close,
        "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    }
    answer = _raw(setup, requests[name])
    if answer:
        status = int(answer.split(b" ", 2)[1])
        # Big headers are accepted (httptools sets no limit: see docs/reliability.md).
        assert (
            status < 500
            if name.endswith("headers") or name == "huge-header"
            else 400 <= status < 500
        ), answer[:300]
    assert setup.daemon.health()["status"] == "ready"


def test_slow_clients_do_not_block_others(setup: Setup) -> None:
    """100 connections each send a few header bytes and stop (slowloris); every other
    client is answered meanwhile, and the slow ones are answered once they finish."""
    daemon = setup.daemon
    core = setup.packages[0]
    digest = oracle(core).tree
    slow = []
    try:
        for _ in range(100):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(DEADLINE)
            sock.connect(daemon.socket)
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nHo")
            slow.append(sock)
        for part in (b"st: x", b"\r\nX-Slow: 1"):
            for sock in slow:
                sock.sendall(part)
            for _ in range(5):
                answer = daemon.fresh([(core, digest)], sync=True)
                assert answer["results"][0]["fresh"] is True, answer
        for sock in slow:
            sock.sendall(b"\r\nConnection: close\r\n\r\n")
        for sock in slow:
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    finally:
        for sock in slow:
            sock.close()


def test_many_concurrent_clients(setup: Setup) -> None:
    daemon = setup.daemon
    want = {p: oracle(p) for p in setup.packages}

    def client(n: int) -> int:
        done = 0
        for i in range(25):
            pkg = setup.packages[(n + i) % len(setup.packages)]
            answer = daemon.fresh(
                [(pkg, want[pkg].tree), (pkg, want[pkg].meta), (pkg, NO_DIGEST)], sync=i % 5 == 0
            )
            assert [r["fresh"] for r in answer["results"]] == [True, True, False], answer
            info = daemon.call("GET", f"/v1/packages/lookup?path={pkg}")
            assert info["tree"] == want[pkg].tree
            done += 1
        return done

    with ThreadPoolExecutor(max_workers=32) as pool:
        assert sum(pool.map(client, range(32))) == 32 * 25
    assert daemon.health()["status"] == "ready"


def test_the_socket_keeps_its_modes(setup: Setup) -> None:
    """After everything above (and a root added and removed), and with a lax umask."""
    daemon = setup.daemon
    extra = setup.root.parent / "extra"
    make_package(extra, "x")
    old = os.umask(0)
    try:
        daemon.call("POST", "/v1/roots", {"path": str(extra)})
        daemon.call("DELETE", f"/v1/roots?path={extra}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(daemon.socket).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(daemon.socket)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(daemon.db / "token").st_mode) == 0o600


@pytest.mark.parametrize(
    "target", ["/openapi.json", "/metrics", "/v1/events", "/v1/packages", "/no/such/route"]
)
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "bearer {token}", "Bearer {token}x", "Bearer {short}", "Basic {token}"],
)
def test_every_tcp_route_needs_the_token(
    setup: Setup, target: str, authorization: str | None
) -> None:
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(token=setup.token, short=setup.token[:-1])
    conn = http.client.HTTPConnection(*setup.tcp, timeout=DEADLINE)
    answer = http_request(conn, "GET", target, headers=headers)
    assert answer.status == 401, answer
    assert answer.json["error"]["code"] == "unauthorized"
    assert setup.token.encode() not in answer.raw


def test_the_token_opens_tcp(setup: Setup) -> None:
    """The control: the same TCP request with the token is answered."""
    conn = http.client.HTTPConnection(*setup.tcp, timeout=DEADLINE)
    answer = http_request(
        conn, "GET", "/v1/packages", headers={"Authorization": f"Bearer {setup.token}"}
    )
    assert answer.status == 200, answer
    assert {p["path"] for p in answer.json["packages"]} >= {str(p) for p in setup.packages}
