"""File-system events from watchdog's public API, handed to the engine through a callback.

One observer serves every root, each root a recursive watch. It subscribes only to
events that can change content: watchdog's default mask also delivers the
open/close-without-write events that the daemon's own reads cause, and hashing 60,000
files that way overflowed the 16,384-event inotify queue with thousands of spurious
events.

A lost event queue arrives as watchdog's ``EventsLostEvent`` (after watchdog has
rebuilt its recursive watches). What watchdog does not report — a directory below a
root it could not watch, a root renamed away — the engine finds out by public means:
the kernel's own list of watches (``watchset``), the root's stat identity and a
liveness canary per root.

freshd once subclassed watchdog's private inotify classes; a patch release rearranged
them and the daemon went blind while reporting ``watching`` (issue 17). Nothing here
touches watchdog's internals.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    EventsLostEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from freshd.watch import watchset
from freshd.watch.watchset import Identity

log = logging.getLogger("freshd.watch.watcher")

EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,  # content writes (IN_MODIFY)
    FileAttribEvent,  # chmod: the executable bit is part of the digest
    FileClosedEvent,  # close after write
    FileMovedEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    DirAttribEvent,  # a directory made unreadable changes what can be scanned
    EventsLostEvent,  # the kernel's queue overflowed: rescan
]


def max_user_watches() -> str:
    """The inotify watch limit in force, for log lines ("?" when unknown): the user
    namespace's own (``user.max_inotify_watches``, a container's), which in the initial
    namespace is ``fs.inotify.max_user_watches``."""
    for path in ("/proc/sys/user/max_inotify_watches", "/proc/sys/fs/inotify/max_user_watches"):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            continue
    return "?"


def identity(path: str) -> Identity | None:
    """The (device, inode) of the directory at ``path`` (followed: a root may be a
    symlink's target); None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class _Handler(FileSystemEventHandler):
    def __init__(self, sink: Callable[[FileSystemEvent], None]) -> None:
        self._sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:
        self._sink(event)


class Watcher:
    """Watches roots recursively and passes their events to ``sink``.

    ``sink`` runs on watchdog's observer thread: it must only hand over, never block.
    Events of one root arrive in the order they happened.
    """

    def __init__(
        self,
        sink: Callable[[FileSystemEvent], None],
        observer: Callable[[], BaseObserver] = Observer,
    ) -> None:
        """``observer``: a watchdog observer class (tests pass a polling one or a fake)."""
        self._handler = _Handler(sink)
        self._watches: dict[str, tuple[ObservedWatch, Identity | None]] = {}
        self._lock = threading.Lock()
        self._observer = observer()

    def start(self) -> None:
        """Start the observer's thread."""
        self._observer.start()

    def watch(self, root: str) -> None:
        """Watch ``root`` and every directory below it; returns once the watches are in
        place. OSError when the root itself cannot be watched. Directories below it that
        cannot be watched are not reported here (see ``watchset``)."""
        with self._lock:
            if root in self._watches:
                return
            before = identity(root)
            watch = self._observer.schedule(
                self._handler, root, recursive=True, event_filter=EVENT_FILTER
            )
            self._watches[root] = (watch, before)

    def watched_identity(self, root: str) -> Identity | None:
        """The identity ``root`` had when its watch was added (None: not watched)."""
        with self._lock:
            entry = self._watches.get(root)
        return entry[1] if entry is not None else None

    def unwatch(self, root: str) -> None:
        """Stop watching ``root`` (no-op when it is not watched)."""
        with self._lock:
            entry = self._watches.pop(root, None)
        if entry is not None:
            # Its emitter may have stopped already (the root was deleted).
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(entry[0])

    def lists_watches(self) -> bool:
        """Whether the kernel lists this process's watches (``watchset.supported``)."""
        return watchset.supported()

    def watched_directories(self) -> frozenset[Identity]:
        """The identity of every directory the kernel watches for this process
        (``watchset.watched``). OSError when /proc cannot be read."""
        return watchset.watched()

    def stop(self) -> None:
        """Stop every watch and join the observer's thread."""
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(timeout=5)
