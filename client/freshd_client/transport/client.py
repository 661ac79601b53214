"""``Client``: is this package still what was installed? One API over two transports.

- **direct** reads the daemon's LMDB index in this process (microseconds);
- **http** asks the daemon over its Unix socket (for processes that cannot map the
  index: a container with only the socket mounted). Either way only the user's own
  daemon and index are believed (docs/security.md).

The transport is chosen as: the ``transport`` argument, else ``$FRESHD_CLIENT_TRANSPORT``,
else direct when the index can be opened read-only, else http.
"""

from __future__ import annotations

import functools
import os
import time

from freshd_client.errors import (
    AmbiguousNameError,
    DaemonNotRunningError,
    DaemonRequestError,
    FreshdError,
    IndexStoreError,
    SchemaMismatchError,
)
from freshd_client.transport import locations

# typing and collections.abc cost ~10 ms of a short-lived process's start-up: names used
# only in annotations are imported for the type checker alone.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Literal

    from freshd_client.spec.digest import Scope
    from freshd_client.transport.direct import DirectTransport, Target
    from freshd_client.transport.http import HttpTransport

    Transport = Literal["direct", "http"]
    Consistency = Literal["fast", "sync"]
    PackageInfo = dict[str, Any]
    """``{"name", "path", "state", "tree", "meta", "files", "generation", "error"}``."""

TRANSPORT_ENV = "FRESHD_CLIENT_TRANSPORT"
_POLL_S = (0.001, 0.05)  # wait_clean: first and longest pause between looks
_HTTP_SLACK_S = 5.0
_MAX_TIMEOUT_MS = 60_000  # the daemon's limit for one request's sync


class Client:
    """Freshness answers from a running freshd daemon. Use as a context manager.

    Example::

        with Client() as c:
            c.is_fresh("/src/mono/libs/core", "b3t2:9f0c…")          # True / False / None
            c.is_fresh(path, digest, consistency="sync")            # sees writes made before it

    ``None`` means unknown: not indexed, not clean, or no ready daemon keeps the index
    current. It is never a guess. Use one Client per thread. A daemon of another user
    is never asked (UntrustedDaemonError), nor is an index another user owns or can
    write read directly (UntrustedIndexError; the automatic transport then asks over
    the socket).
    """

    def __init__(
        self,
        index_dir: str | None = None,
        socket_path: str | None = None,
        transport: Transport | None = None,
        *,
        timeout: float = 5.0,
    ) -> None:
        self._index_dir = index_dir
        self._socket_path = socket_path
        self._requested = transport
        self.timeout = timeout
        self._state: Literal["unopened", "open", "closed"] = "unopened"
        self._direct: DirectTransport | None = None
        self._http: HttpTransport | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> Client:
        """Choose and open the transport (done by ``with`` or the first query)."""
        if self._state == "closed":
            raise RuntimeError("this freshd Client is closed")
        if self._state == "open":
            return self
        mode = self._requested or _transport_from_env()
        if mode != "http":
            index_dir = self._index_dir or locations.index_dir()
            from freshd_client.transport.direct import DirectTransport

            try:
                self._direct = DirectTransport(index_dir)
            except SchemaMismatchError:
                raise
            except IndexStoreError:
                if mode == "direct":
                    raise
        self._state = "open"
        return self

    def close(self) -> None:
        """Release the index and the connection; the client cannot be used again."""
        if self._direct is not None:
            self._direct.close()
            self._direct = None
        if self._http is not None:
            self._http.close()
            self._http = None
        self._state = "closed"

    def __enter__(self) -> Client:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def transport(self) -> Transport:
        """The transport answering queries: ``direct`` or ``http``."""
        self._ready()
        return "direct" if self._direct is not None else "http"

    # -- queries -----------------------------------------------------------------------

    def is_fresh(
        self,
        path: str,
        digest: str,
        scope: Scope | None = None,
        consistency: Consistency = "fast",
    ) -> bool | None:
        """Whether the package at ``path`` still has content ``digest`` (``b3t2:…``/``b3m2:…``).

        ``scope`` defaults to the digest's own; a mismatch raises ValueError. ``sync``
        first proves that every file change made before the call has been processed.
        """
        target = _parsed(digest, scope)
        direct = self._direct if self._state == "open" else self._ready()
        if direct is not None and consistency == "fast":
            return direct.is_fresh(path, target[0], target[1])
        return self._check([(path, digest, *target)], consistency)[0]

    def check_many(
        self, items: Iterable[tuple[str, str]], consistency: Consistency = "fast"
    ) -> list[bool | None]:
        """``is_fresh`` for each ``(path, digest)``, answered from one snapshot."""
        questions = [(path, digest, *_parsed(digest, None)) for path, digest in items]
        direct = self._ready()
        if direct is not None and consistency == "fast":
            return direct.check_many([(p, s, r) for p, _d, s, r in questions])
        return self._check(questions, consistency)

    def lookup(self, path: str | None = None, name: str | None = None) -> PackageInfo | None:
        """The PackageInfo of the package at ``path`` (or with project ``name``), if indexed.

        Raises AmbiguousNameError when ``name`` belongs to several packages. Read
        directly while no daemon keeps the index current, a ``clean`` state reads
        ``unknown``.
        """
        if (path is None) == (name is None):
            raise ValueError("lookup needs exactly one of path= or name=")
        direct = self._ready()
        if direct is not None:
            found = direct.lookup(path=path, name=name)
            if len(found) > 1:
                paths = ", ".join(str(info["path"]) for info in found)
                raise AmbiguousNameError(f"project name {name!r} matches several packages: {paths}")
            return found[0] if found else None
        from urllib.parse import quote

        # fsencode: a path that is not UTF-8 is sent as its bytes, never a UnicodeEncodeError
        query = (
            f"path={quote(os.fsencode(os.path.realpath(path)))}"
            if path
            else f"name={quote(name or '')}"
        )
        try:
            info: PackageInfo = self._transport_http().call("GET", f"/v1/packages/lookup?{query}")
        except DaemonRequestError as exc:
            if exc.status == 404:
                return None
            if exc.status == 409:
                raise AmbiguousNameError(str(exc)) from None
            raise
        return info

    def packages(self) -> list[PackageInfo]:
        """Every indexed package (PackageInfo), by path."""
        direct = self._ready()
        if direct is not None:
            return direct.packages()
        listed = self._transport_http().call("GET", "/v1/packages")["packages"]
        return sorted(listed, key=lambda info: str(info["path"]))

    def status(self) -> dict[str, Any]:
        """The daemon's health (``GET /v1/health``); DaemonNotRunningError if none answers."""
        self._ready()
        return self._transport_http().health()

    def wait_clean(self, path: str, timeout: float) -> PackageInfo | None:
        """Wait until the package at ``path`` has settled after every change made before
        the call; return its PackageInfo (state ``clean``, or ``error`` saying why).

        None when ``timeout`` seconds pass first, or the package is not indexed by then.
        """
        deadline = time.monotonic() + timeout
        synced = False
        pause = _POLL_S[0]
        while True:
            try:
                if not synced:
                    synced = self._sync([path], deadline)
                info = self.lookup(path=path) if synced else None
            except DaemonNotRunningError:
                info = None  # the daemon may be starting: keep trying until the deadline
            if info is not None and info["state"] in ("clean", "error"):
                return info
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _POLL_S[1])

    # -- internals ---------------------------------------------------------------------

    def _ready(self) -> DirectTransport | None:
        if self._state != "open":
            self.open()
        return self._direct

    def _transport_http(self) -> HttpTransport:
        if self._http is None:
            from freshd_client.transport.http import HttpTransport

            # the socket waits longer than a sync may take on the daemon's side
            self._http = HttpTransport(self._socket_path, timeout=self.timeout + _HTTP_SLACK_S)
        return self._http

    def _check(
        self, questions: list[tuple[str, str, Scope, bytes]], consistency: Consistency
    ) -> list[bool | None]:
        """The slow paths: sync consistency, or the http transport."""
        direct = self._direct
        if direct is not None and consistency == "sync":
            deadline = time.monotonic() + self.timeout
            synced = direct.sync([q[0] for q in questions], deadline)
            if synced is not None:  # None: no cookie can be written here, ask over http
                if not synced:
                    return [None] * len(questions)
                targets: list[Target] = [(p, s, r) for p, _d, s, r in questions]
                return direct.check_many(targets)
        body = {
            "items": [
                {"path": os.path.realpath(p), "digest": d, "scope": s} for p, d, s, _r in questions
            ],
            "sync": consistency == "sync",
            "timeout_ms": _timeout_ms(self.timeout),
        }
        try:
            results = self._transport_http().call("POST", "/v1/fresh", body)["results"]
        except DaemonNotRunningError:
            return [None] * len(questions)
        return [r["fresh"] if r["fresh"] in (True, False) else None for r in results]

    def _sync(self, paths: list[str], deadline: float) -> bool:
        """A sync barrier for ``paths``: True once every earlier change is processed."""
        direct = self._ready()
        if direct is not None:
            synced = direct.sync(paths, deadline)
            if synced is not None:
                return synced
        timeout_ms = _timeout_ms(deadline - time.monotonic())
        items = [{"path": os.path.realpath(p), "digest": _ZERO_TREE} for p in paths]
        body = {"items": items, "sync": True, "timeout_ms": timeout_ms}
        return bool(self._transport_http().call("POST", "/v1/fresh", body).get("synced"))


@functools.lru_cache(maxsize=4096)
def _parsed(digest: str, scope: Scope | None) -> tuple[Scope, bytes]:
    """A digest's scope and raw bytes; ValueError when it is not one (of ``scope``).

    Cached: a caller asks about the same few digests again and again, and parsing one is
    most of the cost of a direct ``is_fresh``."""
    from freshd_client.spec.digest import parse

    found, raw = parse(digest)
    if scope is not None and scope != found:
        raise ValueError(f"digest {digest!r} is a {found} digest, not {scope}")
    return found, raw


_ZERO_TREE = "b3t2:" + "0" * 64
"""A digest no package has: a /v1/fresh request made only for its sync barrier."""


def _timeout_ms(seconds: float) -> int:
    return min(_MAX_TIMEOUT_MS, max(1, int(seconds * 1000)))


def _transport_from_env() -> Transport | None:
    raw = os.environ.get(TRANSPORT_ENV, "")
    if raw == "direct":
        return "direct"
    if raw == "http":
        return "http"
    if not raw:
        return None
    raise FreshdError(f"Config '{TRANSPORT_ENV}' has value {raw!r}. Expected 'direct' or 'http'.")
