"""The http transport and the client-side CLI verbs, against a stdlib HTTP server.

These pin the wire behaviour (keep-alive, reconnect, versioning, errors) without the
real daemon; tests/test_client_daemon.py runs the same verbs against ``freshd serve``.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from client_fakes import FakeServer
from freshd_client import (
    AmbiguousNameError,
    ApiMismatchError,
    Client,
    DaemonError,
    DaemonNotRunningError,
    DaemonRequestError,
)
from freshd_client.spec import schema
from freshd_client.transport.http import API_VERSION, HttpTransport

FRESHD = str(Path(sys.executable).parent / "freshd")
A = "b3t2:" + "aa" * 32
B = "b3t2:" + "bb" * 32
CORE = {
    "name": "core",
    "path": "/src/mono/libs/core",
    "state": "clean",
    "tree": A,
    "meta": None,
    "files": 12,
    "generation": 4,
    "error": None,
}
WEB = {**CORE, "name": None, "path": "/src/mono/apps/web", "state": "dirty", "tree": None}
HEALTH = {
    "status": "ready",
    "version": "0.1.0",
    "api_version": 1,
    "pid": 4242,
    "roots": ["/src/mono", "/mnt/nfs"],
    "packages": 2,
    "files": 24,
    "pending": 0,
    "progress": None,
    "index": "/home/me/.local/state/freshd/index",
    "socket": "/run/user/1000/freshd/freshd.sock",
    "watch": {"/src/mono": "watching", "/mnt/nfs": "polling"},
}


def daemon_route(method: str, target: str, body: Any) -> tuple[int, Any]:
    """A tiny stand-in for the daemon's routes (two packages, two roots)."""
    url = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    packages = {p["path"]: p for p in (CORE, WEB)}
    if (method, url.path) == ("GET", "/v1/health"):
        return 200, HEALTH
    if (method, url.path) == ("GET", "/v1/packages"):
        return 200, {"packages": [WEB, CORE]}
    if (method, url.path) == ("GET", "/v1/packages/lookup"):
        if query.get("name") == "dup":
            return 409, {"error": {"code": "ambiguous", "message": "name 'dup' matches 2"}}
        found = packages.get(query.get("path", "")) or (
            CORE if query.get("name") == "core" else None
        )
        if found is None:
            return 404, {"error": {"code": "not_found", "message": "not indexed"}}
        return 200, found
    if (method, url.path) == ("POST", "/v1/fresh"):
        results = []
        for item in body["items"]:
            info = packages.get(item["path"])
            clean = info is not None and info["state"] == "clean"
            fresh = (info["tree"] == item["digest"]) if clean and info else None
            state = info["state"] if info else "unknown"
            results.append({"path": item["path"], "fresh": fresh, "state": state, "digest": None})
        return 200, {"results": results, "synced": body["sync"]}
    if method == "POST" and url.path == "/v1/roots":
        if not body["path"].startswith("/"):
            return 400, {"error": {"code": "bad_path", "message": "not an absolute path"}}
        return 200, {"root": body["path"], "roots": [*HEALTH["roots"], body["path"]]}
    if method == "DELETE" and url.path == "/v1/roots":
        if query["path"] not in HEALTH["roots"]:
            return 404, {"error": {"code": "not_found", "message": f"not a root: {query['path']}"}}
        return 200, {
            "root": query["path"],
            "roots": [r for r in HEALTH["roots"] if r != query["path"]],
        }
    return 404, {"error": {"code": "not_found", "message": "no such route"}}


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A short directory for sockets (AF_UNIX paths are limited to 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="fd") as path:
        yield path


@pytest.fixture
def server(sock_dir: str) -> Iterator[FakeServer]:
    fake = FakeServer(daemon_route, socket_path=os.path.join(sock_dir, "freshd.sock"))
    yield fake
    fake.close()


def test_api_version_is_the_schema_modules() -> None:
    assert API_VERSION == schema.API_VERSION


# -- transport --------------------------------------------------------------------------


def test_requests_share_one_keep_alive_connection(server: FakeServer) -> None:
    with HttpTransport(server.address) as http:
        for _ in range(3):
            assert http.request("GET", "/v1/health") == (200, HEALTH)
        assert http.request("POST", "/v1/fresh", {"items": [], "sync": False}) == (
            200,
            {"results": [], "synced": False},
        )
    assert server.connections == 1
    method, target, body, headers = server.requests[-1]
    assert headers["Content-Type"] == "application/json"
    assert (method, target, body) == ("POST", "/v1/fresh", {"items": [], "sync": False})


def test_reconnects_once_when_the_daemon_closed_an_idle_connection(server: FakeServer) -> None:
    with HttpTransport(server.address) as http:
        assert http.request("GET", "/v1/health")[0] == 200
        server.drop_idle_connections()
        assert http.request("GET", "/v1/health")[0] == 200
    assert server.connections == 2


def test_chunked_answers_are_decoded(sock_dir: str) -> None:
    fake = FakeServer(daemon_route, socket_path=sock_dir + "/s", chunked=True)
    try:
        with HttpTransport(fake.address) as http:
            assert http.request("GET", "/v1/health") == (200, HEALTH)
            assert http.request("GET", "/v1/packages")[1]["packages"] == [WEB, CORE]
    finally:
        fake.close()


def test_no_daemon_names_the_socket_and_how_to_start_one(sock_dir: str) -> None:
    missing = os.path.join(sock_dir, "freshd.sock")
    with pytest.raises(DaemonNotRunningError) as caught:
        HttpTransport(missing).request("GET", "/v1/health")
    assert str(caught.value) == f"no freshd daemon at {missing} (start it with: freshd serve)"
    stale = socket.socket(socket.AF_UNIX)  # a socket file left behind, nobody listening
    stale.bind(missing)
    stale.close()
    with pytest.raises(DaemonNotRunningError):
        HttpTransport(missing).request("GET", "/v1/health")


def test_a_silent_daemon_times_out(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()  # accepts into the backlog, never answers
        with pytest.raises(DaemonError, match=r"did not answer within 0.2 s"):
            HttpTransport(path, timeout=0.2).request("GET", "/v1/health")


@pytest.mark.parametrize(
    ("api", "message"),
    [("2", "speaks API version 2; this client speaks version 1"), (None, "without a Freshd-Api")],
)
def test_api_version_mismatch_is_a_clear_error(
    sock_dir: str, api: str | None, message: str
) -> None:
    fake = FakeServer(daemon_route, socket_path=sock_dir + "/s", api=api)
    try:
        with pytest.raises(ApiMismatchError, match=message):
            HttpTransport(fake.address).request("GET", "/v1/health")
    finally:
        fake.close()


def test_health_checks_its_api_version(sock_dir: str) -> None:
    fake = FakeServer(
        lambda m, p, b: (200, {**HEALTH, "api_version": 7}), socket_path=sock_dir + "/s"
    )
    try:
        with HttpTransport(fake.address) as http, pytest.raises(ApiMismatchError, match="7"):
            http.health()
    finally:
        fake.close()


def test_errors_carry_the_daemons_code_and_message(server: FakeServer, sock_dir: str) -> None:
    with HttpTransport(server.address) as http:
        with pytest.raises(DaemonRequestError) as caught:
            http.call("DELETE", "/v1/roots?path=/nope")
        assert (caught.value.status, caught.value.code) == (404, "not_found")
        assert str(caught.value) == "not a root: /nope"
    failing = FakeServer(
        lambda m, p, b: (500, {"error": {"code": "internal", "message": "boom"}}),
        socket_path=sock_dir + "/f",
    )
    try:
        with pytest.raises(DaemonError, match="failed: HTTP 500 boom"):
            HttpTransport(failing.address).request("GET", "/v1/health")
    finally:
        failing.close()


def test_tcp_sends_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = secrets.token_hex(16)
    fake = FakeServer(daemon_route, token=key)
    try:
        with HttpTransport(tcp=fake.address, token=key) as http:
            assert http.health() == HEALTH
        (tmp_path / "token").write_text(key + "\n")
        (tmp_path / "token").chmod(0o600)
        monkeypatch.setenv("FRESHD_INDEX", str(tmp_path))
        with HttpTransport(tcp=fake.address) as http:  # the token file of the index
            assert http.health() == HEALTH
        with HttpTransport(tcp=fake.address, token=key[::-1]) as http:
            with pytest.raises(DaemonRequestError) as caught:
                http.health()
            assert caught.value.code == "unauthorized"
    finally:
        fake.close()
    with pytest.raises(DaemonError, match="not a HOST:PORT address"):
        HttpTransport(tcp="localhost", token=key)


# -- Client over http -------------------------------------------------------------------


def test_client_over_http(server: FakeServer, tmp_path: Path) -> None:
    with Client(socket_path=server.address, transport="http", index_dir=str(tmp_path)) as c:
        assert c.transport == "http"
        assert c.lookup("/src/mono/libs/core") == CORE
        assert c.lookup(name="core") == CORE
        assert c.lookup("/src/none") is None
        with pytest.raises(AmbiguousNameError, match="dup"):
            c.lookup(name="dup")
        assert c.is_fresh("/src/mono/libs/core", A) is True
        assert c.is_fresh("/src/mono/libs/core", B) is False
        assert c.is_fresh("/src/mono/apps/web", A) is None
        assert c.check_many([("/src/mono/libs/core", A), ("/src/none", A)]) == [True, None]
        assert c.is_fresh("/src/mono/libs/core", A, consistency="sync") is True
        assert c.packages() == [WEB, CORE]  # by path
        assert c.status() == HEALTH
        assert c.wait_clean("/src/mono/libs/core", timeout=5) == CORE
    assert server.connections == 1
    assert server.requests[-2][2]["sync"] is True  # wait_clean's sync barrier


def test_client_without_a_daemon(sock_dir: str, tmp_path: Path) -> None:
    missing = os.path.join(sock_dir, "none.sock")
    with Client(socket_path=missing, transport="http", index_dir=str(tmp_path)) as c:
        assert c.is_fresh("/src/x", A) is None  # freshness: unknown
        assert c.check_many([("/src/x", A)], consistency="sync") == [None]
        assert c.wait_clean("/src/x", timeout=0.05) is None
        with pytest.raises(DaemonNotRunningError):
            c.lookup("/src/x")
        with pytest.raises(DaemonNotRunningError):
            c.status()


# -- CLI verbs --------------------------------------------------------------------------


def freshd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FRESHD, *args], capture_output=True, text=True, timeout=60, check=False)


def test_status(server: FakeServer) -> None:
    proc = freshd("status", "--socket", server.address)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        "ready  pid 4242  freshd 0.1.0\n"
        "socket    /run/user/1000/freshd/freshd.sock\n"
        "index     /home/me/.local/state/freshd/index\n"
        "roots     /src/mono (watching)\n"
        "          /mnt/nfs (polling)\n"
        "packages  2 (24 files), 0 pending\n"
    )
    proc = freshd("status", "--json", "--socket", server.address)
    assert json.loads(proc.stdout) == HEALTH


def test_ls(server: FakeServer) -> None:
    proc = freshd("ls", "--socket", server.address)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "STATE  NAME  PATH                 TREE",
        "dirty  -     /src/mono/apps/web   -",
        "clean  core  /src/mono/libs/core  b3t2:aaaaaaaaaaaa",
    ]
    proc = freshd("ls", "--json", "--socket", server.address)
    assert json.loads(proc.stdout) == {"packages": [WEB, CORE]}


def test_add_and_remove(server: FakeServer, tmp_path: Path) -> None:
    proc = freshd("add", str(tmp_path), "--socket", server.address)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"watching {tmp_path} (3 roots)\n"
    assert server.requests[-1][:3] == ("POST", "/v1/roots", {"path": str(tmp_path)})
    proc = freshd("remove", "/mnt/nfs", "--socket", server.address, "--json")
    assert json.loads(proc.stdout) == {"root": "/mnt/nfs", "roots": ["/src/mono"]}
    proc = freshd("remove", "/src/elsewhere", "--socket", server.address)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == "Error: not a root: /src/elsewhere\n"


@pytest.mark.parametrize("verb", ["add", "remove"])
def test_an_empty_root_is_refused_before_the_daemon_is_asked(server: FakeServer, verb: str) -> None:
    """``freshd add ""`` (an unset ``"$ROOT"``) names no directory: never the current one."""
    before = len(server.requests)
    proc = freshd(verb, "", "--socket", server.address)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == "Error: an empty path names no directory\n"
    assert len(server.requests) == before


@pytest.mark.parametrize("verb", [["status"], ["ls"], ["add", "."], ["remove", "."]])
def test_no_daemon_is_one_line_and_exit_2(sock_dir: str, verb: list[str]) -> None:
    missing = os.path.join(sock_dir, "freshd.sock")
    proc = freshd(*verb, "--socket", missing)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == f"Error: no freshd daemon at {missing} (start it with: freshd serve)\n"


def test_socket_defaults_to_the_environment(server: FakeServer) -> None:
    env = {**os.environ, "FRESHD_SOCKET": server.address}
    proc = subprocess.run(
        [FRESHD, "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert json.loads(proc.stdout)["pid"] == 4242
