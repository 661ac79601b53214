"""HTTP/1.1 to the daemon with the standard library: keep-alive over its Unix socket or TCP.

Not ``http.client``: importing it (email, ssl, urllib) costs ~25 ms on the reference
machine, more than the whole start-up budget of ``freshd status`` (bench/README.md).
The daemon answers every route with a JSON body and a Content-Length, so the subset
spoken here is small: one request at a time per connection, Content-Length or chunked
bodies, keep-alive, and one reconnect when the server has closed an idle connection.
"""

from __future__ import annotations

import json
import socket

from freshd_client.errors import (
    ApiMismatchError,
    DaemonError,
    DaemonNotRunningError,
    DaemonRequestError,
)
from freshd_client.transport import locations, trust
from freshd_client.transport.locations import API_HEADER as API_HEADER
from freshd_client.transport.locations import API_VERSION as API_VERSION

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms at start-up)
if TYPE_CHECKING:
    from typing import Any

_encode = json.JSONEncoder(separators=(",", ":")).encode
"""Compact JSON, ASCII-only (``\\udcXX`` for a path that is not UTF-8): one encoder for
every request rather than one ``json.dumps`` builds each time."""
_MAX_HEAD = 64 * 1024
# Received into one buffer per connection: a new 256 KiB object per recv() was above
# glibc's mmap threshold and cost ~30 µs a request (an mmap, a page fault, an munmap).
_RECV = 64 * 1024


class _DroppedError(Exception):
    """The peer closed the connection before sending a byte of the response."""


class _Connection:
    """One connected socket and its receive buffer."""

    def __init__(self, family: int, address: str | tuple[str, int], timeout: float) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(address)
            if family == socket.AF_UNIX:  # before a byte is sent or believed
                trust.check_daemon(self.sock, str(address))
        except BaseException:
            self.sock.close()
            raise
        self.buffer = bytearray()
        self.used = False
        self._chunk = memoryview(bytearray(_RECV))

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        n = self.sock.recv_into(self._chunk)
        self.buffer += self._chunk[:n]
        return n > 0

    def _take(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise DaemonError("the daemon closed the connection in the middle of a response")
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if len(self.buffer) > _MAX_HEAD or not self._fill():
                raise DaemonError("malformed HTTP response from the daemon")
        return self._take(end + 2)[:-2]

    def exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes, bool]:
        """Send one request and read its response: status, lower-cased headers, body, and
        whether the connection stays open."""
        try:
            self.sock.sendall(request)
            if not self.buffer and not self._fill():
                raise _DroppedError
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise _DroppedError from exc
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > _MAX_HEAD or not self._fill():
                raise DaemonError("malformed HTTP response from the daemon")
        head = self._take(end + 4).decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise DaemonError(f"malformed HTTP status line from the daemon: {head[0]!r}")
        headers: dict[str, str] = {}
        for line in head[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        body = self._body(headers)
        self.used = True
        close = headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0"
        return int(parts[1]), headers, body, not close

    def _body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while size := int(self._line().split(b";", 1)[0], 16):
                chunks.append(self._take(size))
                self._take(2)
            while self._line():  # trailers, then the empty line
                pass
            return b"".join(chunks)
        length = headers.get("content-length")
        if length is not None:
            return self._take(int(length))
        while self._fill():  # no length: the body runs to the end of the connection
            pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


class HttpTransport:
    """Requests to a running daemon over its Unix socket (default) or a loopback TCP address.

    One keep-alive connection, opened on the first request and reopened once when the
    daemon has closed it meanwhile. Not thread-safe: use one transport per thread.

    Over the Unix socket, only a daemon running as this process's own user is believed:
    a daemon of another user raises UntrustedDaemonError when connecting.

    Example::

        http = HttpTransport()                      # $FRESHD_SOCKET, else the default socket
        status, health = http.request("GET", "/v1/health")
        http.close()
    """

    def __init__(
        self,
        socket_path: str | None = None,
        *,
        timeout: float = 5.0,
        tcp: str | None = None,
        token: str | None = None,
    ) -> None:
        self.timeout = timeout
        self._conn: _Connection | None = None
        self._auth = ""
        self.socket_path: str | None
        if tcp is None:
            self.socket_path = socket_path or locations.socket_path()
            self.address = self.socket_path
            self._family: int = socket.AF_UNIX
            self._target: str | tuple[str, int] = self.socket_path
            self._host = "localhost"
        else:
            address = locations.split_host_port(tcp)
            if address is None or address[1] == 0:
                raise DaemonError(f"not a HOST:PORT address: {tcp!r}")
            host, port = address
            self.socket_path = None
            self.address = tcp
            self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self._target = (host, port)
            self._host = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            secret = token if token is not None else _read_token()
            self._auth = f"Authorization: Bearer {secret}\r\n"

    def __enter__(self) -> HttpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a later request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        """Send one request; return the status and the decoded JSON body.

        Raises DaemonNotRunningError when nothing listens at the address,
        ApiMismatchError when the daemon speaks another API version, and
        DaemonError when the daemon fails or answers something that is not JSON.
        """
        payload = b"" if body is None else _encode(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host}\r\nAccept: application/json\r\n"
            f"{self._auth}"
        )
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        status, headers, raw = self._exchange(head.encode("latin-1") + b"\r\n" + payload)
        if status >= 500:
            self.close()
            raise DaemonError(
                f"the freshd daemon at {self.address} failed: {_describe(status, raw)}"
            )
        api = headers.get(API_HEADER)
        if api != str(API_VERSION):
            self.close()
            raise ApiMismatchError(_api_mismatch(self.address, api))
        try:
            return status, json.loads(raw) if raw else None
        except (ValueError, RecursionError):  # RecursionError: nesting too deep to decode
            raise DaemonError(f"the freshd daemon at {self.address} sent invalid JSON") from None

    def call(self, method: str, path: str, body: object | None = None) -> Any:
        """``request``, raising DaemonRequestError (code and message) on a 4xx answer."""
        status, data = self.request(method, path, body)
        if status >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            if not isinstance(error, dict):
                error = {}
            code = str(error.get("code") or f"http_{status}")
            raise DaemonRequestError(status, code, str(error.get("message") or f"HTTP {status}"))
        return data

    def health(self) -> dict[str, Any]:
        """``GET /v1/health``, with its ``api_version`` checked."""
        data: dict[str, Any] = self.call("GET", "/v1/health")
        if data.get("api_version") != API_VERSION:
            self.close()
            raise ApiMismatchError(_api_mismatch(self.address, data.get("api_version")))
        return data

    def _exchange(self, request: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = self._conn or self._connect()
        try:
            try:
                status, headers, body, keep = conn.exchange(request)
            except _DroppedError:
                if not conn.used:
                    raise
                conn.close()  # an idle keep-alive connection the daemon has closed: retry once
                conn = self._conn = self._connect()
                status, headers, body, keep = conn.exchange(request)
        except _DroppedError:
            conn.close()
            self._conn = None
            raise DaemonError(
                f"the freshd daemon at {self.address} closed the connection"
            ) from None
        except TimeoutError:
            conn.close()
            self._conn = None
            raise DaemonError(
                f"the freshd daemon at {self.address} did not answer within {self.timeout:g} s"
            ) from None
        except OSError as exc:
            conn.close()
            self._conn = None
            raise DaemonError(f"lost the connection to {self.address}: {_reason(exc)}") from exc
        except BaseException:
            conn.close()
            self._conn = None
            raise
        self._conn = conn if keep else None
        if not keep:
            conn.close()
        return status, headers, body

    def _connect(self) -> _Connection:
        try:
            return _Connection(self._family, self._target, self.timeout)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            raise DaemonNotRunningError(self.address) from None
        except TimeoutError:
            raise DaemonError(
                f"cannot connect to {self.address}: no answer within {self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise DaemonError(f"cannot connect to {self.address}: {_reason(exc)}") from None


def _read_token() -> str:
    path = locations.token_path(locations.index_dir())
    try:
        return trust.read_private(path, "the daemon's token file").strip()
    except OSError as exc:
        raise DaemonError(f"cannot read the daemon's token at {path}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _describe(status: int, raw: bytes) -> str:
    try:
        message = json.loads(raw)["error"]["message"]
    except (ValueError, RecursionError, KeyError, TypeError):
        message = raw[:200].decode("utf-8", "replace").strip()
    return f"HTTP {status} {message}".rstrip()


def _api_mismatch(address: str, found: object) -> str:
    if found is None:
        return (
            f"{address} answered without a Freshd-Api header: it is not a freshd daemon, "
            f"or one older than this client (API version {API_VERSION})"
        )
    return (
        f"the freshd daemon at {address} speaks API version {found}; this client speaks "
        f"version {API_VERSION} (run the same freshd version on both sides)"
    )
