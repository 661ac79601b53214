"""The sync cookies: a ``sync`` answer reflects every change made before the query.

A cookie is a file written into a root; the watcher gives it back as an event after
every event of that root from before. The engine processes everything received before
the cookies it has seen, then acknowledges them (``Cookies.ack``): the daemon's own
waiters are released in memory, direct clients' cookies are recorded in the index (they
poll it), and the files are deleted a little later, once the engine is idle.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable

import lmdb

from freshd.index.writer import Index
from freshd_client.spec import schema as sc
from freshd_client.spec.schema import COOKIE_PREFIX

log = logging.getLogger("freshd.engine")

COOKIE_POLL_SECONDS = 0.1
_COOKIE_KEEP_NS = 60_000_000_000
_COOKIE_UNLINK_SECONDS = 0.005  # an acknowledged cookie is deleted after this, once idle
_COOKIE_PRUNE_SECONDS = 10.0  # records older than _COOKIE_KEEP_NS go at most this often
_ACKED_SECONDS = 10.0  # how long a seen cookie's later events are recognized


class _SyncGroup:
    def __init__(self, pending: set[str], done: Callable[[bool], None]) -> None:
        self.pending = pending
        self.done = done


class Cookies:
    """The cookies requested, seen, acknowledged and left to delete. ``request`` runs on
    any thread; everything else on the engine thread."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.seen: dict[str, None] = {}  # cookie paths seen, in order, not acknowledged
        self.unrecorded: list[bytes] = []  # direct clients' cookies to record (see ack)
        self.unlink_later: list[str] = []  # acknowledged cookies, deleted once idle
        self.unlink_at = 0.0
        self._acked: dict[str, float] = {}  # in the order acknowledged
        self._pruned = 0.0
        self.own = f"{COOKIE_PREFIX}d{os.getpid()}-"  # waited for in memory
        self._waiters: dict[str, _SyncGroup] = {}
        self._waiters_lock = threading.Lock()
        self._ids = itertools.count(1)

    def request(self, roots: Iterable[str], done: Callable[[bool], None]) -> Callable[[], None]:
        """Write a cookie into each root; ``done(True)`` once they are acknowledged,
        ``done(False)`` if a cookie cannot be written. Returns a function that cancels
        the wait."""
        paths = [
            os.path.join(root, f"{self.own}{next(self._ids)}") for root in dict.fromkeys(roots)
        ]
        if not paths:
            done(True)
            return lambda: None
        group = _SyncGroup(set(paths), done)

        def cancel() -> None:
            with self._waiters_lock:
                for path in paths:
                    self._waiters.pop(path, None)

        # Wait before writing: the engine may see and acknowledge a cookie at once.
        with self._waiters_lock:
            for path in paths:
                self._waiters[path] = group
        # Created read-only: its close is no event the watcher subscribes to (one event
        # fewer through the watcher's threads per cookie).
        flags = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for n, path in enumerate(paths):
            try:
                os.close(os.open(path, flags, 0o600))
            except OSError as exc:
                log.warning("cannot write sync cookie %s: %s", path, exc.strerror or exc)
                cancel()
                for written in paths[:n]:
                    unlink(written)
                done(False)
                return lambda: None
        return cancel

    def see(self, path: str) -> None:
        """A cookie's event: to be acknowledged (unless it was already)."""
        if path not in self._acked:
            self.seen[path] = None

    def poll(self, root: str) -> None:
        """See the cookies in ``root`` whose event may be lost (not watched, overflow)."""
        try:
            with os.scandir(root) as it:
                found = [e.path for e in it if e.name.startswith(COOKIE_PREFIX)]
        except OSError:
            return
        for path in found:
            self.see(path)

    def take(self) -> list[str]:
        """The cookies seen, now to be answered. The daemon's own are waited for in
        memory; direct clients poll the index for theirs, recorded by the step's last
        write (one commit fewer: ``Engine._scan_and_write``)."""
        cookies = list(self.seen)
        self.seen.clear()
        self.unrecorded = [
            os.fsencode(name)
            for name in map(os.path.basename, cookies)
            if not name.startswith(self.own)
        ]
        return cookies

    def ack(self, cookies: list[str]) -> None:
        """Everything before these cookies is in the index: release their waiters, then
        record direct clients' cookies (they poll the index) and delete the files."""
        monotonic = time.monotonic()
        cutoff = monotonic - _ACKED_SECONDS
        # Oldest first: the stale ones are a prefix, whatever the number of recent ones.
        for path, _seen in list(itertools.takewhile(lambda i: i[1] < cutoff, self._acked.items())):
            del self._acked[path]  # later events of an acknowledged cookie are long gone
        for path in cookies:
            self._acked[path] = monotonic
            with self._waiters_lock:
                group = self._waiters.pop(path, None)
                finished = group is not None and not (group.pending - {path})
                if group is not None:
                    group.pending.discard(path)
            if group is not None and finished:
                group.done(True)
        now = time.time_ns()
        prune = monotonic - self._pruned > _COOKIE_PRUNE_SECONDS

        def write(txn: lmdb.Transaction) -> None:
            db = self.index.dbs[sc.DB_COOKIES]
            if prune:
                cursor = txn.cursor(db=db)
                stale = [k for k, v in cursor if now - sc.U64.unpack(v)[0] > _COOKIE_KEEP_NS]
                for key in stale:
                    txn.delete(key, db=db)
            self.record(txn)

        if self.unrecorded or prune:
            self.index.write(write)
        if prune:
            self._pruned = monotonic
        # Deleted a little later: the deletion wakes the watcher's thread and this one
        # while the event loop answers the queries released above.
        self.unlink_soon(cookies)

    def record(self, txn: lmdb.Transaction) -> None:
        """Record the direct clients' cookies of the sync being answered: their answer."""
        value = sc.U64.pack(time.time_ns())
        for name in self.unrecorded:
            txn.put(name, value, db=self.index.dbs[sc.DB_COOKIES])

    def unlink_soon(self, paths: list[str]) -> None:
        """Delete these files (cookies, canaries) once the engine is idle."""
        if not self.unlink_later:
            self.unlink_at = time.monotonic() + _COOKIE_UNLINK_SECONDS
        self.unlink_later += paths

    def unlink_all(self) -> None:
        """Delete the files left to delete, now."""
        for path in self.unlink_later:
            unlink(path)
        self.unlink_later.clear()


def unlink(path: str) -> None:
    """Delete a file, if it is still there."""
    with contextlib.suppress(OSError):
        os.unlink(path)
