"""The transactions of one process and the resizes of its LMDB map, kept apart.

LMDB's rule for ``mdb_env_set_mapsize``: the map may be resized only while no
transaction of the process is active. The daemon resizes when its map is full; a
reader resizes (to 0: the size the writer recorded) when a transaction begins with
``MDB_MAP_RESIZED``, the writer having grown the file past the reader's map. Done while
another thread of the process is inside a transaction, a resize pulls the map from
under it: py-lmdb invalidates that transaction (its next call raises), fails a write
transaction's calls with EINVAL and refuses to resize during one; older releases could
read unmapped memory. So every transaction of a process passes a gate, and a resize
waits at the gate until none is inside (docs/index-schema.md, "Map size").
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TypeVar

import lmdb

from freshd_client.errors import IndexStoreError

T = TypeVar("T")
RESIZE_WAIT_S = 10.0
"""The longest a resize waits for the transactions under way (each lasts micro- to
milliseconds); then it fails with IndexStoreError instead of waiting for ever on a
transaction that the resizing thread itself holds."""


class MapGate:
    """Transactions of ``env`` pass together, a resize of its map alone.

    One per environment and process. ``begin``/``end`` cost about 0.25 µs more than
    ``env.begin``/``abort``: one entry in a deque per transaction under way (deque
    appends and pops are atomic), and a lock only while a resize is waiting.
    """

    def __init__(self, env: lmdb.Environment, path: str) -> None:
        self.env = env
        self.path = path
        self.resizes = 0
        """How many resizes this gate has done."""
        self._inside: deque[None] = deque()
        self._resizing = False
        self._changed = threading.Condition(threading.Lock())

    # -- transactions ------------------------------------------------------------------

    def begin(self, *, write: bool = False) -> lmdb.Transaction:
        """Begin a transaction, adopting a map that another process grew; pass it to
        ``end`` (always: it leaves the gate)."""
        seen = self.resizes
        self._inside.append(None)  # _enter, inline: this is a direct query's hot path
        if self._resizing:
            self._wait()
        try:
            return self.env.begin(write=write)
        except lmdb.MapResizedError:
            self._leave()
        except BaseException:
            self._leave()
            raise
        self.resize(0, seen)
        self._enter()
        try:
            return self.env.begin(write=write)
        except BaseException:
            self._leave()
            raise

    def end(self, txn: lmdb.Transaction, *, commit: bool = False) -> None:
        """Commit (``commit``) or abort ``txn``, and leave the gate."""
        try:
            if commit:
                txn.commit()
            else:
                txn.abort()
        finally:
            self._inside.pop()  # _leave, inline
            if self._resizing:
                with self._changed:
                    self._changed.notify_all()

    @contextlib.contextmanager
    def reading(self) -> Iterator[lmdb.Transaction]:
        """A read transaction for a ``with`` block (aborted at its end)."""
        txn = self.begin()
        try:
            yield txn
        finally:
            self.end(txn)

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """``fn`` in a read transaction; an LMDB error is raised as IndexStoreError."""
        try:
            with self.reading() as txn:
                return fn(txn)
        except lmdb.Error as exc:
            raise store_error(exc, f"cannot read index at {self.path}") from exc

    def _enter(self) -> None:
        self._inside.append(None)
        if self._resizing:
            self._wait()

    def _wait(self) -> None:
        """Entered while a resize waits: step out until it is done (checked after the
        entry is made, so a resize sees either the entry or this thread waiting)."""
        while self._resizing:
            self._leave()
            with self._changed:
                while self._resizing:
                    self._changed.wait()
            self._inside.append(None)

    def _leave(self) -> None:
        self._inside.pop()
        if self._resizing:
            with self._changed:
                self._changed.notify_all()

    # -- resizing ------------------------------------------------------------------------

    def resize(self, size: int, seen: int) -> None:
        """Set the map size to ``size`` bytes (0: the size the index's writer recorded)
        once no transaction of this process is active. Nothing happens when the gate has
        resized since it counted ``seen`` resizes (another thread did it meanwhile).
        The caller must not hold a transaction of this environment."""
        with self._changed:
            while self._resizing:
                self._changed.wait()
            if self.resizes != seen:
                return
            self._resizing = True
        try:
            deadline = time.monotonic() + RESIZE_WAIT_S
            with self._changed:
                while self._inside:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise IndexStoreError(
                            f"cannot resize the map of the index at {self.path}: "
                            f"transactions still active after {RESIZE_WAIT_S:.0f} s"
                        )
                    self._changed.wait(remaining)
            try:
                self.env.set_mapsize(size)
            except lmdb.Error as exc:
                raise store_error(exc, f"cannot resize the map of {self.path}") from exc
            self.resizes += 1
        finally:
            with self._changed:
                self._resizing = False
                self._changed.notify_all()


def store_error(exc: lmdb.Error, doing: str) -> IndexStoreError:
    """The project's exception for an LMDB error met while ``doing`` (a phrase)."""
    if isinstance(exc, lmdb.DiskError) or getattr(exc, "errno", None) == errno.ENOSPC:
        return IndexStoreError(f"{doing}: no space left on device")
    return IndexStoreError(f"{doing}: {exc}")
