"""File-system events from watchdog, handed to the engine through a callback.

One observer serves every root. It subscribes only to events that can change
content: watchdog's default mask also delivers the open/close-without-write
events that the daemon's own reads cause, and hashing 60,000 files that way
overflowed the 16,384-event inotify queue with thousands of spurious events.

On Linux the observer reports two conditions watchdog itself only logs: a
queue overflow (events were lost) and a watch that could not be added because
``fs.inotify.max_user_watches`` is exhausted (a directory is not watched).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

from watchdog.events import (
    DirAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver, ObservedWatch

log = logging.getLogger("freshd.watcher")

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
]

# watchdog holds an IN_MOVED_FROM back for up to 0.5 s to pair it with its
# IN_MOVED_TO, and every later event waits behind it. freshd treats a move as a
# delete plus a create, so pairing is a nicety: a few milliseconds suffice (the
# kernel queues both halves of a rename together).
_MOVE_PAIRING_SECONDS = 0.005


def max_user_watches() -> str:
    """The current ``fs.inotify.max_user_watches``, for log lines ("?" when unknown)."""
    try:
        with open("/proc/sys/fs/inotify/max_user_watches") as f:
            return f.read().strip()
    except OSError:
        return "?"


class _Handler(FileSystemEventHandler):
    def __init__(self, sink: Callable[[FileSystemEvent], None]) -> None:
        self._sink = sink

    def dispatch(self, event: FileSystemEvent) -> None:
        self._sink(event)


class Watcher:
    """Watches roots recursively and passes their events to ``sink``.

    ``on_overflow()`` is called when events were lost; ``on_limit(path)`` when a
    directory could not be watched because the watch limit is exhausted. All three
    callbacks run on watchdog's threads: they must only hand over, never block.
    """

    def __init__(
        self,
        sink: Callable[[FileSystemEvent], None],
        *,
        on_overflow: Callable[[], None],
        on_limit: Callable[[str], None],
    ) -> None:
        self._handler = _Handler(sink)
        self._watches: dict[str, ObservedWatch] = {}
        self._lock = threading.Lock()
        self._observer = _make_observer(on_overflow, on_limit)

    def start(self) -> None:
        """Start the observer's threads."""
        self._observer.start()

    def watch(self, root: str) -> None:
        """Watch ``root`` recursively. OSError when the root itself cannot be watched."""
        with self._lock:
            if root in self._watches:
                return
            self._watches[root] = self._observer.schedule(
                self._handler, root, recursive=True, event_filter=EVENT_FILTER
            )

    def unwatch(self, root: str) -> None:
        """Stop watching ``root`` (no-op when it is not watched)."""
        with self._lock:
            watch = self._watches.pop(root, None)
        if watch is not None:
            # Its emitter may have stopped already (the root was deleted).
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(watch)

    def stop(self) -> None:
        """Stop every watch and join the observer's threads."""
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(timeout=5)


def _make_observer(on_overflow: Callable[[], None], on_limit: Callable[[str], None]) -> Any:
    if not sys.platform.startswith("linux"):
        from watchdog.observers import Observer

        return Observer()
    from watchdog.observers import inotify, inotify_c, inotify_move_event_grouper

    inotify_move_event_grouper.InotifyMoveEventGrouper.delay = _MOVE_PAIRING_SECONDS
    # Re-adding the watch of a directory it already watches (after a move or an
    # overflow) makes watchdog warn; the watch is correct either way.
    warnings.filterwarnings("ignore", "Callback with id", RuntimeWarning)

    class ReportingInotifyFD(inotify_c.InotifyFD):
        """The shared inotify instance, reporting what watchdog only logs."""

        def add_callback(self, path: bytes, mask: Any, callback: Any, id_: Any) -> Any:
            try:
                return super().add_callback(path, mask, callback, id_)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    on_limit(os.fsdecode(path))
                raise

        def handle_event(self, event: Any) -> None:
            if event.is_queue_overflow:
                on_overflow()
            super().handle_event(event)

    class ReportingObserver(inotify.InotifyObserver):
        def __init__(self) -> None:
            self._inotify_fd = ReportingInotifyFD()
            self._inotify_fd.start()
            BaseObserver.__init__(self, inotify.InotifyEmitter, inotify_fd=self._inotify_fd)

    return ReportingObserver()
