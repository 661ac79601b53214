"""The direct transport: answers from the LMDB index, read-only, in the caller's process.

The hot path is one read transaction, two gets (the ``daemon`` meta record and the
package head) and a comparison of 32 raw bytes; nothing is decoded beyond the fixed
heads (docs/index-schema.md, docs/client-protocol.md). An index that nobody keeps
current (no daemon, a stale heartbeat, still indexing) answers ``None``, never ``True``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import lmdb

from freshd_client.errors import ApiMismatchError, IndexStoreError, SchemaMismatchError
from freshd_client.spec import schema as sc
from freshd_client.spec.digest import Scope
from freshd_client.spec.mapgate import MapGate
from freshd_client.spec.schema import META_DAEMON, name_key, path_key

_READY = sc.DAEMON_STATUSES.index("ready")
_CLEAN = sc.STATE_CODES["clean"]
_TARGETS: dict[Scope, tuple[int, int]] = {"tree": (24, 1), "meta": (56, 2)}
"""Offset of the scope's 32 digest bytes in the package head, and its flag bit."""
_DIGEST_END = {offset: offset + 32 for offset, _flag in _TARGETS.values()}
_unpack_daemon = sc.DAEMON_HEAD.unpack_from
_FIRST_POLL_S = 50e-6
_SHORT_POLL_S = 250e-6
"""The longest pause between polls while a cookie is young: a daemon acknowledges within
a few ms, and a read transaction costs ~2 µs, so polling 4,000 times a second for those
ms costs little, while pauses doubling to 2 ms added ~1 ms to a typical sync."""
_SHORT_POLLING_S = 20e-3
_MAX_POLL_S = 2e-3

Target = tuple[str, Scope, bytes]
"""One question: package path, scope, the 32 raw digest bytes asked about."""


class _Env:
    """An environment shared by every client of one index in this process.

    LMDB forbids opening one environment twice in a process (closing either would drop
    the other's locks), so handles are counted and shared.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.env = sc.open_env(path, readonly=True)
        try:
            self.identity = _identity(path)
            self.meta = self.env.open_db(sc.DB_META, create=False)
            self.packages = self.env.open_db(sc.DB_PACKAGES, create=False)
            self.names = self.env.open_db(sc.DB_NAMES, create=False)
            self.roots = self.env.open_db(sc.DB_ROOTS, create=False)
        except lmdb.Error as exc:
            self.env.close()
            raise IndexStoreError(f"cannot read index at {path}: {exc}") from exc
        self.gate = MapGate(self.env, path)
        self.pid = os.getpid()
        self.users = 0
        self._cookies: Any = None

    def cookies(self) -> Any:
        """The ``cookies`` database, or None when this index has none yet."""
        if self._cookies is None:
            try:
                self._cookies = self.env.open_db(sc.DB_COOKIES, create=False)
            except lmdb.NotFoundError:
                return None
        return self._cookies


_envs: dict[str, _Env] = {}
_envs_lock = threading.Lock()


def _acquire(path: str, *, stale: _Env | None = None) -> _Env:
    with _envs_lock:
        handle = _envs.get(path)
        if handle is None or handle is stale or handle.pid != os.getpid():
            handle = _Env(path)  # an inherited (forked) handle is left alone, never closed
            _envs[path] = handle
        handle.users += 1
        return handle


def _release(handle: _Env) -> None:
    with _envs_lock:
        handle.users -= 1
        if handle.users == 0 and handle.pid == os.getpid():
            if _envs.get(handle.path) is handle:
                del _envs[handle.path]
            handle.env.close()


def _identity(index_dir: str) -> tuple[int, int]:
    st = os.stat(os.path.join(index_dir, "data.mdb"))
    return st.st_dev, st.st_ino


class DirectTransport:
    """Read-only access to the index at ``index_dir`` (raises IndexMissingError,
    SchemaMismatchError or IndexStoreError when it cannot be read)."""

    def __init__(self, index_dir: str) -> None:
        self.index_dir = os.path.realpath(index_dir)
        self._h = _acquire(self.index_dir)
        self._counter = itertools.count()
        self._closed = False

    def close(self) -> None:
        """Release the shared environment (once)."""
        if not self._closed:
            self._closed = True
            _release(self._h)

    # -- the hot path -------------------------------------------------------------------

    def is_fresh(self, path: str, scope: Scope, raw: bytes) -> bool | None:
        """Whether the package at ``path`` is clean with ``raw`` as its ``scope`` digest."""
        h = self._h
        gate = h.gate
        txn = gate.begin()
        try:  # no ``with``: a generator costs ~1 µs of a ~2 µs query
            if self._live(txn):
                head = txn.get(path_key(path), db=h.packages)
                if head is None:
                    head = _get_canonical(txn, h.packages, path)
                    if head is None:
                        return None
                offset, flag = _TARGETS[scope]
                return _answer(head, offset, flag, raw)
        finally:
            gate.end(txn)
        self._adopt_rebuilt()
        return None

    def check_many(self, targets: Sequence[Target]) -> list[bool | None]:
        """``is_fresh`` for each target, all from one snapshot of the index."""
        h = self._h
        packages = h.packages
        out: list[bool | None] = []
        txn = h.gate.begin()
        try:
            live = self._live(txn)
            get = txn.get
            for path, scope, raw in targets if live else ():
                head = get(path_key(path), db=packages)
                if head is None:
                    head = _get_canonical(txn, packages, path)
                    if head is None:
                        out.append(None)
                        continue
                offset, flag = _TARGETS[scope]
                out.append(_answer(head, offset, flag, raw))
        finally:
            h.gate.end(txn)
        if not live:
            self._adopt_rebuilt()
            return [None] * len(targets)
        return out

    def _live(self, txn: lmdb.Transaction) -> bool:
        raw = txn.get(META_DAEMON, db=self._h.meta)
        if raw is None:
            return False
        api, status, _pid, heartbeat, _started = _unpack_daemon(raw)
        if api != sc.API_VERSION:
            raise ApiMismatchError(
                f"the daemon keeping the index at {self.index_dir} speaks API version {api}; "
                f"this client speaks version {sc.API_VERSION} (run the same freshd version)"
            )
        age: int = time.time_ns() - heartbeat
        return status == _READY and 0 <= age < sc.LIVENESS_NS

    def _adopt_rebuilt(self) -> None:
        """Called when the index is not live: if it was rebuilt (a new data.mdb, e.g. after
        a schema change), switch to the new file so that later answers come from it."""
        try:
            replaced = _identity(self.index_dir) != self._h.identity
        except OSError:
            return
        if replaced:
            fresh = _acquire(self.index_dir, stale=self._h)
            _release(self._h)
            self._h = fresh

    # -- records --------------------------------------------------------------------------

    def lookup(self, path: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """PackageInfo of the package at ``path``, or of every package named ``name``.

        When no live daemon keeps the index current, a ``clean`` state reads ``unknown``.
        """
        h = self._h
        with h.gate.reading() as txn:
            live = self._live(txn)
            if path is not None:
                raw = txn.get(path_key(path), db=h.packages)
                heads = [raw if raw is not None else _get_canonical(txn, h.packages, path)]
            else:
                from freshd_client.content.project import normalize_name

                listed = txn.get(name_key(normalize_name(name or "")), db=h.names)
                paths = json.loads(bytes(listed)) if listed else []
                heads = [txn.get(path_key(p), db=h.packages) for p in paths]
            return [_info(head, live) for head in heads if head is not None]

    def packages(self) -> list[dict[str, Any]]:
        """PackageInfo of every indexed package, by path."""
        h = self._h
        with h.gate.reading() as txn:
            live = self._live(txn)
            infos = [_info(value, live) for _key, value in txn.cursor(db=h.packages)]
        return sorted(infos, key=lambda info: str(info["path"]))

    # -- sync -------------------------------------------------------------------------------

    def sync(self, paths: Iterable[str], deadline: float) -> bool | None:
        """Prove that the daemon has processed every change made before this call.

        Writes a cookie file into the root of each package and waits (until the
        ``time.monotonic()`` deadline) for the daemon to record it. True: synced;
        False: not live, or the deadline passed; None: a cookie cannot be written
        here (no permission, a read-only mount), so ask the daemon over HTTP instead.
        """
        h = self._h
        cookies = h.cookies()
        if cookies is None:
            return None
        with h.gate.reading() as txn:
            if not self._live(txn):
                return False
            roots = {root for path in paths if (root := _root_of(txn, h, path))}
        written: list[str] = []
        try:
            for root in sorted(roots):
                cookie = os.path.join(root, self._cookie_name())
                try:
                    os.close(os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                except OSError:
                    return None
                written.append(cookie)
            return self._wait_cookies(
                cookies, [os.fsencode(os.path.basename(c)) for c in written], deadline
            )
        finally:
            for cookie in written:
                with contextlib.suppress(OSError):  # the daemon deletes the cookies it has seen
                    os.unlink(cookie)

    def _cookie_name(self) -> str:

        return f"{sc.COOKIE_PREFIX}{os.getpid()}-{next(self._counter)}-{os.urandom(6).hex()}"

    def _wait_cookies(self, cookies: Any, names: list[bytes], deadline: float) -> bool:
        delay = _FIRST_POLL_S
        patient = time.monotonic() + _SHORT_POLLING_S  # then back off to _MAX_POLL_S
        while True:
            with self._h.gate.reading() as txn:
                if all(txn.get(name, db=cookies) is not None for name in names):
                    return True
                if not self._live(txn):
                    return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _SHORT_POLL_S if time.monotonic() < patient else _MAX_POLL_S)


def _answer(head: sc.Raw, offset: int, flag: int, raw: bytes) -> bool | None:
    if head[0] != sc.SCHEMA_VERSION:
        raise SchemaMismatchError(f"package record of schema version {head[0]}")
    if head[1] != _CLEAN or not head[2] & flag:
        return None
    return head[offset : _DIGEST_END[offset]] == raw


def _get_canonical(txn: lmdb.Transaction, db: Any, path: str) -> sc.Raw | None:
    """The record of ``path`` after canonicalization (the as-given key was absent).

    The exact key is tried first: realpath costs ~5 µs of lstat calls, and an index
    key is already the canonical path of a package.
    """
    canonical = os.path.realpath(path)
    if canonical == path:
        return None
    raw: sc.Raw | None = txn.get(path_key(canonical), db=db)
    return raw


def _info(head: sc.Raw, live: bool) -> dict[str, Any]:
    info = sc.decode_package(head).info()
    if not live and info["state"] == "clean":
        info["state"] = "unknown"
    return info


def _root_of(txn: lmdb.Transaction, h: _Env, path: str) -> str | None:
    """The root the package at ``path`` was found under; for a package not indexed yet,
    the innermost root that contains ``path``."""
    head = txn.get(path_key(path), db=h.packages) or _get_canonical(txn, h.packages, path)
    if head is not None:
        root = sc.decode_package(head).root
        if root:
            return root
    canonical = os.path.realpath(path)
    best: str | None = None
    for _key, value in txn.cursor(db=h.roots):
        root = json.loads(bytes(value))["path"]
        inside = canonical == root or canonical.startswith(root.rstrip("/") + "/")
        if inside and (best is None or len(root) > len(best)):
            best = root
    return best
