"""What ``bench_daemon.py`` drives: ``freshd serve``, ``watchman``, and their clients.

- ``Freshd``: one daemon process, started on a root and an index, stopped with SIGTERM;
  ``wait_ready`` polls ``/v1/health``.
- ``Watchman``: ``watchman --foreground`` with its socket, state, log and an empty
  config file in a private directory, so no system-wide instance or
  ``/etc/watchman.json`` is involved; ``pywatchman`` clients on its socket.
- ``Api``: JSON over HTTP/1.1 on the daemon's Unix socket, one keep-alive connection.
- ``EventLog``: the ``/v1/events`` stream read on a thread, every event stamped with
  ``time.perf_counter()`` when it arrives.
- ``memory``: VmRSS, VmHWM and PSS of a process and of its descendants (the daemon's
  hashing pool runs in a forkserver's children).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench_index import FRESHD, log

POLL_S = 0.005
START_TIMEOUT_S = 600.0
EVENT_TIMEOUT_S = 10.0
_READY_LINE = re.compile(
    r"ready: (\d+) packages, (\d+) files \(hashed (\d+), reused (\d+)\) in ([\d.]+) s"
)

Json = dict[str, Any]


# -- process memory ----------------------------------------------------------------------


def _proc_kib(pid: int, name: str, field: str) -> int:
    """A ``kB`` field of /proc/PID/<name>; 0 when the process is gone."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/{name}", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def memory(pid: int) -> Json:
    """MiB: the process's VmRSS, peak VmHWM and PSS, and RSS and PSS summed over its
    descendants (RSS counts the pages they share with each other once per process)."""
    kids = descendants(pid)
    return {
        "rss_mib": _proc_kib(pid, "status", "VmRSS") / 1024,
        "hwm_mib": _proc_kib(pid, "status", "VmHWM") / 1024,
        "pss_mib": _proc_kib(pid, "smaps_rollup", "Pss") / 1024,
        "children": len(kids),
        "children_rss_mib": sum(_proc_kib(k, "status", "VmRSS") for k in kids) / 1024,
        "children_pss_mib": sum(_proc_kib(k, "smaps_rollup", "Pss") for k in kids) / 1024,
    }


# -- HTTP over the daemon's Unix socket ----------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("freshd", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Api:
    """JSON requests to the daemon on one keep-alive connection."""

    def __init__(self, socket_path: str, timeout: float = 120.0) -> None:
        self.conn = _UnixConnection(socket_path, timeout)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        """Status and body (decoded when JSON); reconnects once if the daemon closed an
        idle connection (every request used here may be repeated)."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                if attempt == 2:
                    raise
        is_json = "json" in response.getheader("content-type", "")
        return response.status, json.loads(raw) if raw and is_json else raw

    def json(self, method: str, path: str, body: object | None = None) -> Any:
        """The decoded body of a 200 answer; RuntimeError otherwise."""
        status, value = self.call(method, path, body)
        if status != 200:
            raise RuntimeError(f"{method} {path} answered {status}: {value!r:.300}")
        return value

    def fresh(self, items: list[Json], *, sync: bool, timeout_ms: int = 1000) -> Json:
        """``POST /v1/fresh``."""
        body = {"items": items, "sync": sync, "timeout_ms": timeout_ms}
        answer: Json = self.json("POST", "/v1/fresh", body)
        return answer

    def packages(self) -> dict[str, Json]:
        """``GET /v1/packages`` by path."""
        return {p["path"]: p for p in self.json("GET", "/v1/packages")["packages"]}

    def metrics(self) -> dict[str, float]:
        """The daemon's unlabelled Prometheus samples."""
        status, raw = self.call("GET", "/metrics")
        samples: dict[str, float] = {}
        for line in raw.decode().splitlines() if status == 200 else []:
            name, _, value = line.partition(" ")
            if line and not line.startswith("#") and "{" not in name:
                with contextlib.suppress(ValueError):
                    samples[name] = float(value)
        return samples


# -- server-sent events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event, stamped with ``time.perf_counter()`` on arrival."""

    at: float
    kind: str
    data: Json


class EventLog:
    """The daemon's ``/v1/events`` stream, read on a thread into ``events``."""

    def __init__(self, socket_path: str) -> None:
        self.events: list[Event] = []
        self.closed = False
        self._cond = threading.Condition()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.connect(socket_path)
        self._sock.sendall(b"GET /v1/events HTTP/1.1\r\nHost: freshd\r\n\r\n")
        self._thread = threading.Thread(target=self._read, name="sse", daemon=True)
        self._thread.start()
        if self.wait(lambda e: e.kind == "hello", 0, EVENT_TIMEOUT_S) is None:
            self.close()
            raise RuntimeError("no hello event on /v1/events")

    def close(self) -> None:
        """Stop reading."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(5)

    def mark(self) -> int:
        """Index of the next event."""
        with self._cond:
            return len(self.events)

    def since(self, start: int) -> list[Event]:
        """The events from index ``start`` on."""
        with self._cond:
            return self.events[start:]

    def quiet(self, interval: float, timeout: float) -> None:
        """Wait until no event has arrived for ``interval`` (at most ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while time.monotonic() < deadline:
                count = len(self.events)
                self._cond.wait(interval)
                if len(self.events) == count:
                    return

    def wait(self, match: Callable[[Event], bool], start: int, timeout: float) -> Event | None:
        """The first event from index ``start`` on that ``match``es, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[start:]:
                    if match(event):
                        return event
                start = len(self.events)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.closed:
                    return None
                self._cond.wait(remaining)

    def _read(self) -> None:
        raw = b""  # bytes not decoded yet: the head, chunk framing
        text = b""  # the event stream
        chunked: bool | None = None
        try:
            while chunk := self._sock.recv(1 << 16):
                now = time.perf_counter()
                raw += chunk
                if chunked is None:
                    end = raw.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    chunked = b"chunked" in raw[:end].lower()
                    raw = raw[end + 4 :]
                body, raw = _dechunk(raw) if chunked else (raw, b"")
                text += body
                while (end := text.find(b"\n\n")) >= 0:
                    message, text = text[:end], text[end + 2 :]
                    self._add(now, message.decode())
        except OSError:
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def _add(self, at: float, message: str) -> None:
        kind, data = "message", ""
        for line in message.split("\n"):
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        if data:  # not a keep-alive comment
            with self._cond:
                self.events.append(Event(at, kind, json.loads(data)))
                self._cond.notify_all()


def _dechunk(raw: bytes) -> tuple[bytes, bytes]:
    """The data of the complete chunks at the start of ``raw``, and what remains."""
    out = b""
    while (eol := raw.find(b"\r\n")) >= 0:
        size = int(raw[:eol].split(b";")[0], 16)
        if size == 0 or len(raw) < eol + 2 + size + 2:
            break
        out += raw[eol + 2 : eol + 2 + size]
        raw = raw[eol + 2 + size + 2 :]
    return out, raw


def package_event(path: str, state: str, not_tree: str | None = None) -> Callable[[Event], bool]:
    """Matches a ``package`` event of ``path`` in ``state`` with a tree other than ``not_tree``."""

    def match(event: Event) -> bool:
        data = event.data
        return (
            event.kind == "package"
            and data.get("path") == path
            and data.get("state") == state
            and (not_tree is None or data.get("tree") != not_tree)
        )

    return match


# -- the processes -----------------------------------------------------------------------


def _stop_process(proc: subprocess.Popen[bytes]) -> int | None:
    """SIGTERM ``proc`` and reap it; SIGKILL if it has not exited within 30 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def _tail(path: str, lines: int = 5) -> str:
    with contextlib.suppress(OSError), open(path, encoding="utf-8", errors="replace") as fh:
        return " | ".join(fh.read().strip().splitlines()[-lines:])
    return ""


class Freshd:
    """One ``freshd serve`` process, its stderr in ``log_path``."""

    def __init__(
        self, root: str, db: str, socket_path: str, log_path: str, args: list[str] | None = None
    ) -> None:
        self.root, self.db, self.socket_path, self.log_path = root, db, socket_path, log_path
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.kids: list[int] = []
        self.first_answer = 0.0  # perf_counter of the first /v1/health answer

    @property
    def pid(self) -> int:
        """The daemon's pid."""
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> float:
        """Spawn the daemon; the ``perf_counter`` just before."""
        env = {**os.environ, "FRESHD_HOME": os.path.dirname(self.socket_path)}
        cmd = [
            FRESHD,
            "serve",
            self.root,
            "--db",
            self.db,
            "--socket",
            self.socket_path,
            *self.args,
        ]
        with open(self.log_path, "wb") as err:
            started = time.perf_counter()
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        return started

    def wait_ready(self) -> float:
        """Poll ``/v1/health`` until ``ready``; the ``perf_counter`` when seen."""
        assert self.proc is not None
        api = Api(self.socket_path, timeout=10)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    raise RuntimeError(f"freshd exited {code}: {_tail(self.log_path)}")
                with contextlib.suppress(OSError, http.client.HTTPException):
                    status, health = api.call("GET", "/v1/health")
                    self.first_answer = self.first_answer or time.perf_counter()
                    if status == 200 and health.get("status") == "ready":
                        ready = time.perf_counter()
                        self.kids = descendants(self.pid)
                        return ready
                time.sleep(POLL_S)
        finally:
            api.close()
        raise RuntimeError(f"freshd not ready after {START_TIMEOUT_S:.0f} s")

    def stop(self) -> int | None:
        """SIGTERM and wait; a hashing process left behind is stopped by its pid."""
        if self.proc is None:
            return None
        self.kids = sorted({*self.kids, *descendants(self.pid)})
        code = _stop_process(self.proc)
        deadline = time.monotonic() + 5
        while (left := [k for k in self.kids if os.path.exists(f"/proc/{k}")]) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        for pid in left:  # not expected: the daemon shuts its pool down
            log(f"warning: freshd's process {pid} outlived the daemon; stopping it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        return code

    def summary(self) -> Json | None:
        """The daemon's own ``ready: …`` log line, parsed."""
        with contextlib.suppress(OSError), open(self.log_path, encoding="utf-8") as fh:
            found = _READY_LINE.findall(fh.read())
            if found:
                packages, files, hashed, reused, seconds = found[-1]
                return {
                    "packages": int(packages),
                    "files": int(files),
                    "hashed": int(hashed),
                    "reused": int(reused),
                    "seconds": float(seconds),
                }
        return None


class Watchman:
    """``watchman --foreground`` with its socket, state, log and config in ``home``."""

    def __init__(self, binary: str, home: str) -> None:
        self.binary, self.home = binary, home
        self.sock = os.path.join(home, "sock")
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def start(self) -> None:
        """Start the server and wait until it answers."""
        os.makedirs(self.home, mode=0o700, exist_ok=True)
        config = os.path.join(self.home, "watchman.json")
        with open(config, "w", encoding="ascii") as fh:
            fh.write("{}\n")  # not /etc/watchman.json: Watchman's defaults
        cmd = [
            self.binary,
            "--foreground",
            "--no-save-state",
            f"--sockname={self.sock}",
            f"--logfile={os.path.join(self.home, 'log')}",
            f"--statefile={os.path.join(self.home, 'state')}",
            f"--pidfile={os.path.join(self.home, 'pid')}",
        ]
        env = {**os.environ, "WATCHMAN_CONFIG_FILE": config}
        with open(os.path.join(self.home, "stderr"), "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        deadline = time.monotonic() + 30
        while self.proc.poll() is None and time.monotonic() < deadline:
            if os.path.exists(self.sock):
                with contextlib.suppress(Exception), self.client(timeout=5) as client:
                    self.pid = int(client.query("get-pid")["pid"])
                    return
            time.sleep(0.05)
        raise RuntimeError(f"watchman did not start: {_tail(os.path.join(self.home, 'log'))}")

    def client(self, timeout: float) -> Any:
        """A pywatchman client on this server's socket."""
        import pywatchman

        return pywatchman.client(sockpath=self.sock, timeout=timeout)

    def stop(self) -> None:
        """``shutdown-server``, then SIGTERM if it is still running."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(Exception), self.client(timeout=10) as client:
                client.query("shutdown-server")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        _stop_process(self.proc)
