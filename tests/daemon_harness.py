"""A real ``freshd serve`` in a subprocess, and what the daemon tests check it with.

``freshd_factory`` starts daemons on tmp roots with ``--db``, ``--socket`` and
``FRESHD_HOME`` in tmp directories and waits for health ``ready`` with a deadline; its
finalizer sends SIGTERM, waits, and requires a clean exit. The daemon's stderr goes to a
file that is attached to the report of a failing test (``pytest_runtest_makereport``
below: test modules load this file with ``pytest_plugins``).

The HTTP helper is ``http.client`` over AF_UNIX, a new connection per request: the
tests speak raw HTTP (malformed bodies, missing headers) that a real client would not.
``assert_exact`` is the oracle check every scenario ends with: a ``sync`` query and the
whole ``/v1/packages`` list against digests recomputed from scratch.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from conftest import PYPROJECT, Spec, make_tree
from freshd_client.content.oneshot import digest_path

FRESHD = str(Path(sys.executable).parent / "freshd")
DEADLINE = 60.0
"""Seconds any single condition may take on a loaded 2-core machine before a test fails."""

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None], what: str, timeout: float = DEADLINE, interval: float = 0.005
) -> T:
    """Poll ``predicate`` until it returns something truthy; at the deadline, fail naming
    ``what``. The interval is a poll period, not a wait for anything."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# -- files -------------------------------------------------------------------------------


def make_package(parent: Path, name: str, files: Mapping[str, Spec] | None = None) -> Path:
    """A package ``parent/name`` with a pyproject naming it and a few source files."""
    spec: dict[str, Spec] = {"pyproject.toml": PYPROJECT.replace("Demo_Pkg", name)}
    spec.update(
        files if files is not None else {f"src/{name}/m{i}.py": f"x = {i}\n" for i in range(3)}
    )
    return make_tree(parent / name, spec)


def write(path: Path, data: str | bytes) -> None:
    """Write ``path`` (in place when it exists: same inode), creating its directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def atomic_write(path: Path, data: str | bytes) -> None:
    """An editor's save: write a temporary file beside ``path``, then rename it over."""
    tmp = path.with_name(f".{path.name}.swp")
    write(tmp, data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Oracle:
    """A package's digests computed from scratch, without the daemon."""

    tree: str
    meta: str
    files: int


def oracle(path: Path) -> Oracle:
    """``freshd_client.content.oneshot.digest_path`` for both scopes."""
    tree = digest_path(str(path), "tree")
    meta = digest_path(str(path), "meta")
    assert tree.tree is not None and meta.meta is not None
    return Oracle(tree.tree, meta.meta, len(tree.records))


# -- HTTP over the Unix socket -------------------------------------------------------------


class UnixConnection(http.client.HTTPConnection):
    """``http.client`` over an AF_UNIX socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass
class Answer:
    """One HTTP response: status, lower-cased headers, body bytes, and the JSON if any."""

    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.raw[:2000]!r}"


def http_request(
    conn: http.client.HTTPConnection,
    method: str,
    target: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """Send one request on ``conn`` and read the whole answer; closes ``conn``.

    An iterable body is sent chunked. The server may answer (413) and close before it
    has read the whole body: the answer is read all the same.
    """
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request(method, target, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        raw = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, raw)
    finally:
        conn.close()


# -- the daemon ---------------------------------------------------------------------------


@dataclass
class Daemon:
    """One ``freshd serve`` subprocess and where it keeps things."""

    roots: list[Path]
    db: Path
    socket: str
    home: Path
    log_path: Path
    args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment of the daemon and of CLI commands that should find it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRESHD_")}
        env.update(FRESHD_HOME=str(self.home), FRESHD_INDEX=str(self.db), FRESHD_SOCKET=self.socket)
        return env

    def command(self) -> list[str]:
        roots = [str(r) for r in self.roots]
        return [FRESHD, "serve", *roots, "--db", str(self.db), "--socket", self.socket, *self.args]

    def start(self) -> Daemon:
        """Start the subprocess (appending to the log file); returns at once."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        """Everything the daemon wrote to stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"freshd serve exited with {self.proc.returncode}; its log:\n{self.log()}"
            )

    # -- requests --

    def request(
        self,
        method: str,
        target: str,
        body: object = None,
        *,
        raw: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEADLINE + 30,
    ) -> Answer:
        """One request over the Unix socket; ``body`` is sent as JSON, ``raw`` as is."""
        payload: bytes | Iterable[bytes] | None = raw
        if body is not None:
            payload = json.dumps(body).encode()
        sent = {"Content-Type": "application/json"} if payload is not None else {}
        sent.update(headers or {})
        return http_request(UnixConnection(self.socket, timeout), method, target, payload, sent)

    def call(self, method: str, target: str, body: object = None) -> Any:
        """A request that must succeed (200 and the API header); its JSON."""
        answer = self.request(method, target, body)
        assert answer.status == 200, f"{method} {target}: {answer}"
        assert answer.headers.get("freshd-api") == "1", answer.headers
        return answer.json

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", "/v1/health")
        return result

    def packages(self) -> dict[str, dict[str, Any]]:
        """``/v1/packages`` by path."""
        return {p["path"]: p for p in self.call("GET", "/v1/packages")["packages"]}

    def fresh(
        self, items: Iterable[tuple[Path | str, str]], *, sync: bool, timeout_ms: int = 55_000
    ) -> dict[str, Any]:
        """``POST /v1/fresh`` for (path, digest) pairs."""
        body = {
            "items": [{"path": str(p), "digest": d} for p, d in items],
            "sync": sync,
            "timeout_ms": timeout_ms,
        }
        result: dict[str, Any] = self.call("POST", "/v1/fresh", body)
        return result

    def answers(self) -> bool:
        """Whether anything accepts connections on the socket."""
        try:
            self.request("GET", "/v1/health", timeout=5)
        except OSError:
            return False
        return True

    def wait_status(self, *statuses: str, timeout: float = DEADLINE) -> dict[str, Any]:
        """Wait until health answers with one of ``statuses``; the health."""

        def reached() -> dict[str, Any] | None:
            self._check_alive()
            try:
                health = self.health()
            except OSError:
                return None  # not listening yet
            return health if health["status"] in statuses else None

        return wait_until(reached, f"health {'/'.join(statuses)}", timeout)

    def wait_package(
        self, path: Path, predicate: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, Any]:
        """Wait (fast reads) until the package at ``path`` satisfies ``predicate``."""

        def check() -> dict[str, Any] | None:
            self._check_alive()
            info = self.packages().get(str(path))
            return info if info is not None and predicate(info) else None

        return wait_until(check, f"{path}: {what}")

    # -- stopping --

    def stop(self, sig: int = signal.SIGTERM, timeout: float = DEADLINE) -> int:
        """Send ``sig`` and wait for the exit; the exit code (already exited: its code)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"freshd serve did not stop within {timeout:g} s of signal {sig}"
                ) from None
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL: no clean-up at all (the socket file and the lock stay behind)."""
        self.stop(signal.SIGKILL)

    def leftovers(self) -> list[int]:
        """Processes still in the daemon's session (its worker pool), the daemon excluded."""
        return [pid for pid in session_members(self.pid) if pid != self.pid]


def session_members(sid: int) -> list[int]:
    """The live processes whose session id is ``sid`` (from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue  # exited meanwhile
        # After the command name: state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(entry))
    return members


def assert_exact(daemon: Daemon, packages: Iterable[Path], roots: Iterable[Path] = ()) -> None:
    """The daemon's answers equal a from-scratch recomputation.

    A ``sync`` query for every package's oracle digests must say fresh; then
    ``/v1/packages`` must list exactly ``packages`` among the packages under ``roots``
    (default: the daemon's roots), each clean with the oracle's digests and file count.
    """
    expected = {str(p): oracle(p) for p in packages}
    items = [(p, o.tree) for p, o in expected.items()] + [(p, o.meta) for p, o in expected.items()]
    answer = daemon.fresh(items, sync=True)
    assert answer["synced"] is True, answer
    wrong = [
        (item, result)
        for item, result in zip(items, answer["results"], strict=True)
        if result["fresh"] is not True
    ]
    assert not wrong, f"sync answers differ from the oracle: {wrong}\n{daemon.packages()}"
    prefixes = tuple(str(r) + "/" for r in (roots or daemon.roots))
    listed = {p: info for p, info in daemon.packages().items() if p.startswith(prefixes)}
    assert sorted(listed) == sorted(expected), "the daemon lists other packages"
    for path, want in expected.items():
        got = listed[path]
        assert (got["state"], got["tree"], got["meta"], got["files"], got["error"]) == (
            "clean",
            want.tree,
            want.meta,
            want.files,
            None,
        ), f"{path}: {got} != {want}"


# -- the fixture -----------------------------------------------------------------------------


class Factory:
    """Starts daemons (for one test or one module) and stops them in ``close``."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.base.mkdir(parents=True)
        self.started: list[Daemon] = []
        # AF_UNIX paths are limited to 108 bytes: sockets live in a short temp dir.
        self.sock_base = Path(tempfile.mkdtemp(prefix="fd"))

    def __call__(
        self,
        *roots: Path,
        args: Iterable[str] = ("--workers", "2"),
        db: Path | None = None,
        socket_path: str | None = None,
        wait: bool = True,
    ) -> Daemon:
        """Start ``freshd serve`` on ``roots``; by default wait for ``ready``."""
        n = len(self.started)
        daemon = Daemon(
            roots=list(roots),
            db=db or self.base / f"db{n}",
            socket=socket_path or str(self.sock_base / f"run{n}" / "freshd.sock"),
            home=self.base / "home",
            log_path=self.base / f"freshd{n}.log",
            args=list(args),
        )
        self.started.append(daemon)
        daemon.start()
        if wait:
            daemon.wait_status("ready", "degraded")
        return daemon

    def close(self) -> None:
        """SIGTERM every daemon still running; each must exit 0 without a traceback."""
        problems = []
        for daemon in self.started:
            if daemon.proc is None:
                continue
            running = daemon.proc.poll() is None
            code = daemon.stop()
            if running and code != 0:
                problems.append(f"freshd serve exited with {code} on SIGTERM:\n{daemon.log()}")
            for pid in daemon.leftovers():  # what a killed daemon left: ours to end
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if "Traceback" in daemon.log():
                problems.append(f"freshd serve logged a traceback:\n{daemon.log()}")
        shutil.rmtree(self.sock_base, ignore_errors=True)
        assert not problems, "\n".join(problems)


class PrefixedDaemon(Daemon):
    """A daemon started through a wrapper command (``setpriv``, ``unshare``)."""

    prefix: list[str]

    def command(self) -> list[str]:
        return [*self.prefix, *super().command()]


def start_prefixed(
    factory: Factory, prefix: list[str], base: Path, roots: list[Path], args: list[str]
) -> PrefixedDaemon:
    """A daemon run through ``prefix``, keeping its index and socket under ``base``."""
    n = len(factory.started)
    daemon = PrefixedDaemon(
        roots=roots,
        db=base / f"db{n}",
        socket=str(base / f"run{n}" / "freshd.sock"),
        home=base / "home",
        log_path=base / f"freshd{n}.log",
        args=args,
    )
    daemon.prefix = prefix
    factory.started.append(daemon)
    daemon.start()
    daemon.wait_status("ready", "degraded")
    return daemon


@pytest.fixture
def freshd_factory(tmp_path: Path) -> Iterator[Factory]:
    """``freshd_factory(*roots, …)`` starts a daemon; all are stopped with SIGTERM at the end."""
    factory = Factory(tmp_path / "freshd")
    try:
        yield factory
    finally:
        factory.close()


_REPORTED_LOG = 64 * 1024  # the end of a daemon's log is attached to a failure report


def _daemons_of(value: object) -> list[Daemon]:
    if isinstance(value, Daemon):
        return [value]
    if isinstance(value, Factory):
        return value.started
    daemon = getattr(value, "daemon", None)
    return [daemon] if isinstance(daemon, Daemon) else []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Attach the stderr of the test's daemons to the report of a failing test."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        daemons = [d for value in funcargs.values() for d in _daemons_of(value)]
        for n, daemon in enumerate(daemons):
            log = daemon.log()
            if len(log) > _REPORTED_LOG:
                log = f"[{len(log) - _REPORTED_LOG} characters before]\n{log[-_REPORTED_LOG:]}"
            report.sections.append((f"freshd serve #{n} stderr ({daemon.log_path})", log))
    return report


def tcp_address(daemon: Daemon) -> tuple[str, int]:
    """The TCP address the daemon announced in its log (``--tcp 127.0.0.1:0``)."""
    found = wait_until(
        lambda: re.search(r"and tcp (\S+):(\d+) ", daemon.log()), "the daemon's TCP address"
    )
    return found.group(1), int(found.group(2))
