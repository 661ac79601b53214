"""Mount-table changes, which inotify does not report.

A file system mounted over a watched directory (or unmounted from one) changes what
its paths lead to without a single inotify event: the watches stay on the directory
now hidden below the mount. The kernel does tell through ``/proc/self/mountinfo``:
polled for ``POLLPRI``, it wakes whenever the mount table of the process's namespace
changes (proc(5)). ``MountWatcher`` waits for that on a thread of its own, diffs the
table against the last one it read and hands the mount points that came or went to a
callback; the engine then re-watches and rescans every root that contains, or lies
inside, one of them (``affected``).

Where the file does not exist (not Linux), nothing is watched; the periodic stat sweep
(``freshd.watch.scrub``) remains.
"""

from __future__ import annotations

import logging
import os
import re
import select
import threading
from collections.abc import Callable, Iterable
from typing import NamedTuple

log = logging.getLogger("freshd.watch.mounts")

MOUNTINFO = "/proc/self/mountinfo"
_OCTAL = re.compile(rb"\\([0-7]{3})")
_CHUNK = 1 << 16


class Mount(NamedTuple):
    """One line of mountinfo: what tells two mounts at the same point apart."""

    mount_id: int
    device: str  # major:minor
    root: str  # the directory of the file system mounted (a bind mount's source)
    point: str  # where it is mounted, in this process's namespace


def unescape(field: bytes) -> str:
    """A mountinfo path: the kernel writes space, tab, newline and backslash as octal
    escapes (``\\040`` …); other bytes as they are (decoded as file names are)."""
    return os.fsdecode(_OCTAL.sub(lambda m: bytes((int(m.group(1), 8),)), field))


def parse(raw: bytes) -> frozenset[Mount]:
    """The mounts listed in the text of a mountinfo file (malformed lines are skipped)."""
    mounts = set()
    for line in raw.split(b"\n"):
        fields = line.split(b" ")
        if len(fields) < 5 or not fields[0].isdigit():
            continue
        mounts.add(
            Mount(
                int(fields[0]),
                fields[2].decode("ascii", "replace"),
                unescape(fields[3]),
                unescape(fields[4]),
            )
        )
    return frozenset(mounts)


def changed_points(before: frozenset[Mount], after: frozenset[Mount]) -> set[str]:
    """The mount points of the mounts that are in one table only."""
    return {m.point for m in before ^ after}


def affected(points: Iterable[str], roots: Iterable[str]) -> list[str]:
    """The roots that contain, or lie inside, one of the mount ``points``."""
    found = []
    points = list(points)
    for root in roots:
        if any(_within(p, root) or _within(root, p) for p in points):
            found.append(root)
    return found


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


class MountWatcher:
    """Calls ``on_change(points)`` (on its own thread) with the mount points added or
    removed each time the mount table changes. ``start()``, then ``stop()``."""

    def __init__(self, on_change: Callable[[set[str]], None], path: str = MOUNTINFO) -> None:
        self._on_change = on_change
        self._path = path
        self._fd = -1
        self._wake_r = self._wake_w = -1
        self._table: frozenset[Mount] = frozenset()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """Whether the mount table is being watched."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Read the table and start waiting for changes; logs and watches nothing where
        the table cannot be read."""
        try:
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            self._table = parse(self._read())
        except OSError as exc:
            self._close_table()
            log.warning(
                "cannot watch the mount table (%s: %s); mounts over watched directories are "
                "seen by the periodic stat sweep only",
                self._path,
                exc.strerror or exc,
            )
            return
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="freshd-mounts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop waiting and join the thread."""
        if self._thread is not None:
            os.write(self._wake_w, b"x")
            self._thread.join(5)
            self._thread = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        self._close_table()

    def _close_table(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _read(self) -> bytes:
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, _CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)

    def _run(self) -> None:
        poller = select.poll()
        # The change is signalled as POLLPRI (with POLLERR); the poll itself consumes it,
        # so a change made while the table is being read wakes the next poll.
        poller.register(self._fd, select.POLLPRI | select.POLLERR)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._wake_r in ready:
                return
            try:
                table = parse(self._read())
            except OSError as exc:
                log.error(
                    "cannot read the mount table any more (%s); mounts over watched "
                    "directories are seen by the periodic stat sweep only",
                    exc.strerror or exc,
                )
                return
            points = changed_points(self._table, table)
            self._table = table
            if points:
                try:
                    self._on_change(points)
                except Exception:  # it only hands over; keep watching whatever it did
                    log.exception("the mount-change callback failed")
