"""The daemon serves its own user only: each Unix-socket connection's peer is checked.

The socket's directory is private (``freshd_client.transport.trust.private_dir``), so another user
cannot normally reach the socket at all; this check holds even when that fails (a
socket or directory whose mode was widened, a socket bind-mounted elsewhere). The
kernel records the connecting process's uid when it connects (``SO_PEERCRED``); a
connection of any other uid than the daemon's own and those named by ``--allow-uid``
gets one 403 answer and is closed before uvicorn sees a byte of it. TCP connections
pass: there the token is checked on every request (``freshd.api.guard``).

The check wraps whichever HTTP protocol class uvicorn chose, through the public
asyncio ``Protocol`` interface alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import Any

from freshd_client.transport import trust
from freshd_client.transport.locations import API_HEADER, API_VERSION

log = logging.getLogger("freshd")

REFUSED_CODE = "forbidden_user"
_CLOSE_AFTER_S = 5.0
"""A refused client that sends nothing is disconnected after this long."""


def own_user_only(inner: type[asyncio.Protocol], allowed: frozenset[int]) -> type[asyncio.Protocol]:
    """A protocol class that hands a connection to ``inner`` only when its peer is the
    daemon's effective user or one of ``allowed``."""
    served = allowed | {os.geteuid()}

    class OwnUserOnly(asyncio.Protocol):
        def __init__(self, **kwargs: Any) -> None:
            self.inner = inner(**kwargs)
            self.refusal: bytes | None = None
            self.transport: Any = None  # uvloop's transports are not asyncio.Transport
            self.timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.refusal = _refusal(transport.get_extra_info("socket"), served)
            if self.refusal is None:
                self.inner.connection_made(transport)
                return
            self.transport = transport
            self.timer = asyncio.get_running_loop().call_later(_CLOSE_AFTER_S, transport.close)

        def data_received(self, data: bytes) -> None:
            if self.refusal is None:
                self.inner.data_received(data)
            elif self.transport is not None:  # answered once its request has come
                self.transport.write(self.refusal)
                self.transport.close()
                self.transport = None

        def eof_received(self) -> bool | None:
            if self.refusal is None:
                return self.inner.eof_received()
            return None

        def connection_lost(self, exc: Exception | None) -> None:
            if self.refusal is None:
                self.inner.connection_lost(exc)
            elif self.timer is not None:
                self.timer.cancel()

        def pause_writing(self) -> None:
            if self.refusal is None:
                self.inner.pause_writing()

        def resume_writing(self) -> None:
            if self.refusal is None:
                self.inner.resume_writing()

    return OwnUserOnly


def _refusal(sock: Any, served: frozenset[int]) -> bytes | None:
    """None when the connection on ``sock`` may be served, else the answer refusing it."""
    if sock is None or getattr(sock, "family", None) != socket.AF_UNIX:
        return None  # TCP: the guard checks the token of every request
    try:
        uid = trust.peer_uid(sock)
    except OSError as exc:
        uid, why = None, f"its user cannot be told ({exc.strerror or exc})"
    else:
        why = "its user cannot be told on this system"
    if uid is not None and uid in served:
        return None
    if uid is not None:
        why = f"it runs as {trust.who(uid)}"
    owner = trust.who(os.geteuid())
    log.warning("refused a connection on the Unix socket: %s; this daemon serves %s", why, owner)
    message = f"this freshd daemon serves {owner} only; the connecting process: {why}"
    body = json.dumps({"error": {"code": REFUSED_CODE, "message": message}}).encode()
    head = (
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n"
        f"{API_HEADER}: {API_VERSION}\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
