"""Fakes for the client tests: a scripted index writer process and a stdlib HTTP server.

``FakeDaemon`` drives tests/fake_daemon.py (the writer must live in another process:
LMDB refuses a second open of one environment in a process). ``FakeServer`` speaks
HTTP/1.1 on a Unix socket (or loopback TCP) with canned or computed answers, to test
the http transport without the real daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEADLINE = 30.0


class FakeDaemon:
    """The fake writer process for one index directory."""

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "fake_daemon.py"), str(index_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._expect_ok()

    def _expect_ok(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == "ok", line

    def send(self, op: str, **fields: Any) -> None:
        """Run one command in the writer and wait until it is done."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        self._expect_ok()

    def package(self, path: str, root: str, **fields: Any) -> None:
        """Write a package record (``pending=True``: applied before the next cookie ack)."""
        fields.setdefault("name", None)
        fields.setdefault("tree", None)
        fields.setdefault("meta", None)
        self.send("package", path=path, root=root, **fields)

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with contextlib.suppress(BrokenPipeError):  # the test may have killed the process
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


Route = Callable[[str, str, Any], tuple[int, Any]]
"""(method, path with query, decoded JSON body) -> (status, JSON answer)."""


class FakeServer:
    """An HTTP/1.1 keep-alive server in a thread; counts the connections it accepted."""

    def __init__(
        self,
        route: Route,
        *,
        socket_path: str | None = None,
        api: str | None = "1",
        token: str | None = None,
        chunked: bool = False,
    ) -> None:
        self.route = route
        self.api = api
        self.token = token
        self.chunked = chunked
        self.connections = 0
        self.accepted: list[socket.socket] = []
        self.requests: list[tuple[str, str, Any, dict[str, str]]] = []
        handler = self._handler()
        server_cls: Any
        if socket_path is not None:
            server_cls = type("S", (socketserver.ThreadingMixIn, socketserver.UnixStreamServer), {})
            self.server = server_cls(socket_path, handler)
            self.address = socket_path
        else:
            server_cls = type("S", (socketserver.ThreadingMixIn, socketserver.TCPServer), {})
            self.server = server_cls(("127.0.0.1", 0), handler)
            self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                fake.connections += 1
                fake.accepted.append(self.request)
                super().setup()

            def address_string(self) -> str:
                return "unix"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                fake.requests.append((self.command, self.path, body, dict(self.headers)))
                if fake.token is not None and (
                    self.headers.get("Authorization") != f"Bearer {fake.token}"
                ):
                    status, answer = 401, {"error": {"code": "unauthorized", "message": "token"}}
                else:
                    status, answer = fake.route(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if fake.api is not None:
                    self.send_header("Freshd-Api", fake.api)
                if fake.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    half = len(data) // 2
                    for part in (data[:half], data[half:]):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve  # noqa: N815 (http.server's names)

        return Handler

    def drop_idle_connections(self) -> None:
        """Close every accepted connection, as uvicorn does after its keep-alive timeout."""
        for sock in self.accepted:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if isinstance(self.address, str) and os.path.exists(self.address):
            os.unlink(self.address)
