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
_SUBSCRIBED = tuple(EVENT_FILTER)

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
    directory could not be watched because the watch limit is exhausted;
    ``on_moved(root)`` when a watched root directory was renamed away (its watches
    follow the directory, not the path, so whatever appears at the path is unwatched);
    ``on_unreadable(path)`` when a directory could not be watched because the daemon may
    not read it (watchdog drops that silently; ``tree`` adds it once readable).
    The callbacks run on watchdog's threads: they must only hand over, never block.
    """

    def __init__(
        self,
        sink: Callable[[FileSystemEvent], None],
        *,
        on_overflow: Callable[[], None],
        on_limit: Callable[[str], None],
        on_moved: Callable[[str], None],
        on_unreadable: Callable[[str], None],
    ) -> None:
        self._handler = _Handler(sink)
        self._watches: dict[str, ObservedWatch] = {}
        self._lock = threading.Lock()
        self._deferred: set[bytes] = set()  # roots being scheduled with ``deferred``

        def moved(path: str) -> None:
            if path in self._watches:  # a subdirectory's rename is an ordinary event
                on_moved(path)

        self._observer = _make_observer(
            sink, on_overflow, on_limit, moved, on_unreadable, self._deferred
        )

    def start(self) -> None:
        """Start the observer's threads."""
        self._observer.start()

    def watch(self, root: str, *, deferred: bool = False) -> None:
        """Watch ``root`` recursively. OSError when the root itself cannot be watched.

        ``deferred`` (Linux): only the root directory is watched now; the caller adds
        the watches below it with ``directory`` and ``tree``, each before it lists what
        they cover. The start-up crawl does, so that the workers scan the first packages
        while the watches of the next ones are being added."""
        with self._lock:
            if root in self._watches:
                return
            if deferred:
                self._deferred.add(os.fsencode(root))
            try:
                self._watches[root] = self._observer.schedule(
                    self._handler, root, recursive=True, event_filter=EVENT_FILTER
                )
            finally:
                self._deferred.discard(os.fsencode(root))

    def directory(self, path: str) -> None:
        """Watch the directory ``path`` (inside a watched root), not what is below it."""
        for group in self._groups_of(path):
            with group._lock:
                group._add_callback(os.fsencode(path))

    def tree(self, path: str) -> None:
        """Watch the directory ``path`` (inside a watched root) and every one below it,
        each before it is listed. Also adds a directory that could not be watched before
        (``on_unreadable``), reported again if it still cannot."""
        for group in self._groups_of(path):
            with group._lock:
                group._add_all_callbacks(os.fsencode(path))

    def _groups_of(self, path: str) -> list[Any]:
        """watchdog's InotifyWatchGroup of each root holding ``path``: the roots given to
        ``freshd serve`` may nest, and each root's group keeps watches of its own (one
        left when the other root is removed)."""
        with self._lock:
            watches = [w for r, w in self._watches.items() if path == r or path.startswith(r + "/")]
        emitters = [self._observer._emitter_for_watch.get(w) for w in watches]
        return [g for e in emitters if (g := getattr(e, "_inotify", None)) is not None]

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


def _make_observer(
    sink: Callable[[FileSystemEvent], None],
    on_overflow: Callable[[], None],
    on_limit: Callable[[str], None],
    on_moved: Callable[[str], None],
    on_unreadable: Callable[[str], None],
    deferred: set[bytes],
) -> Any:
    if not sys.platform.startswith("linux"):
        from watchdog.observers import Observer

        return Observer()
    from watchdog.observers import inotify, inotify_c, inotify_move_event_grouper

    inotify_move_event_grouper.InotifyMoveEventGrouper.delay = _MOVE_PAIRING_SECONDS

    class ReportingInotifyFD(inotify_c.InotifyFD):
        """The shared inotify instance, reporting what watchdog only logs."""

        def add_callback(self, path: bytes, mask: Any, callback: Any, id_: Any) -> Any:
            mask |= inotify_c.InotifyConstants.IN_MOVE_SELF  # see handle_event
            try:
                wd = super().add_callback(path, mask, callback, id_)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    on_limit(os.fsdecode(path))
                raise
            if wd == -1:  # EACCES, which watchdog swallows: the directory is not watched
                on_unreadable(os.fsdecode(path))
            return wd

        def _add_callback(self, path: bytes, mask: Any, callback: Any, id_: Any) -> Any:
            """watchdog's, without its warning when the directory is watched already (after
            a move, an overflow, or by the start-up crawl): the watch is right either way,
            and the warning's text holds the repr of the watch group with every path it
            watches (~0.14 ms for 6,000 directories, for each directory added again)."""
            watch = self._get_or_create_watch(path, mask)
            watch.callbacks[id_] = callback
            return watch.wd

        def handle_event(self, event: Any) -> None:
            if event.is_queue_overflow:
                on_overflow()
            elif event.is_move_self:
                # Asked for by add_callback, unknown to watchdog: not passed on. The path
                # a watch was added for names a root when the root itself moved.
                watch = self._watch_for_wd.get(event.wd)
                if watch is not None:
                    on_moved(os.fsdecode(watch._initial_creation_path))
                return
            super().handle_event(event)

    class PassingGrouper(inotify_move_event_grouper.InotifyMoveEventGrouper):
        """watchdog's move pairing, handing an event that nothing is held back for straight
        to the emitter, on the inotify reader's thread.

        watchdog queues every event for the emitter's thread, to hold an IN_MOVED_FROM
        back while it waits for its IN_MOVED_TO: one thread hand-over more per event, and a
        sync query waits for its cookie's (~0.1 ms, more while other threads hold the
        interpreter lock). Only the halves of a move, and the events behind one still
        queued, take that way now; each root's events still arrive in order.
        """

        def __init__(self) -> None:
            super().__init__()
            self.deliver: Callable[[Any], None] | None = None  # set by the emitter
            self._held = 0  # queued for the emitter's thread and not yet delivered
            self._order = threading.Lock()

        def put_event(self, event: Any) -> None:
            ev = event.ev
            with self._order:
                # A deleted root stops its emitter, which must not happen on this thread.
                queued = ev.is_moved_from or ev.is_moved_to or ev.is_delete_self
                if self._held == 0 and not queued and self.deliver is not None:
                    self.deliver(event)
                    return
                grouped = self._group_moved_to_event(event) if ev.is_moved_to else event
                if grouped is not event:
                    self._held -= 1  # its IN_MOVED_FROM left the queue: the pair replaces it
                self._held += 1
                self._queue.put(grouped, delay=ev.is_moved_from)

        def delivered(self) -> None:
            """The emitter's thread passed a queued event on."""
            with self._order:
                self._held -= 1

        def discard_pending_events(self) -> None:
            with self._order:
                self._held -= len(self._queue._queue)  # one taken but not passed on stays
                super().discard_pending_events()

    class MoveSafeWatchGroup(inotify.InotifyWatchGroup):
        """watchdog's watch group, forgetting the watches of a directory moved out.

        watchdog keeps the path bookkeeping of a directory moved out of the tree (its
        kernel watch follows the inode). When the directory came back under another
        name and a directory at its old path was then moved, the stale entry re-pointed
        the returning directory's watch at a wrong path: its events named files of
        another package, and the changed package stayed clean (issue 5, churn seed 101).
        """

        def __post_init__(self) -> None:
            self.moving: dict[int, list[tuple[inotify_c.WatchDescriptor, bytes]]] = {}
            self.passing = self._move_event_grouper = PassingGrouper()
            super().__post_init__()

        def on_event(self, event: Any) -> None:
            with self._lock:
                src = self._build_event_source_path(event) if event.is_directory else None
                if src is not None and event.is_moved_from:
                    below = src + b"/"
                    self.moving[event.cookie] = [
                        (wd, path)
                        for path, wd in self._active_callbacks_by_path.items()
                        if path == src or path.startswith(below)
                    ]
            super().on_event(event)
            if src is not None and event.is_moved_to and self.is_recursive:
                # A directory created just before an ancestor moved could not be watched
                # under its old path (watchdog drops the ENOENT): watch the moved tree as
                # it is now. Adding a watch again only refreshes its path. Its files are
                # covered by the full rescan the move itself causes.
                with self._lock:
                    if self.is_active and os.path.isdir(src):
                        self._add_all_callbacks(src)

        def moved_out(self, cookie: int) -> None:
            """An unpaired move of a directory: it left the tree, drop its watches
            (those not registered again under a new path meanwhile)."""
            with self._lock:
                watched = self.moving.pop(cookie, [])
                stale = [
                    wd for wd, path in watched if self._active_callbacks_by_watch.get(wd) == path
                ]
                if stale and self.is_active:
                    self._remove_callbacks(stale)

        def _add_all_callbacks(self, path: bytes) -> None:
            """watchdog's, walking with ``os.scandir`` instead of ``os.walk`` plus an
            ``islink`` per directory: the start-up registration of 5,702 directories took
            ~0.17 s, of which the 5,702 ``inotify_add_watch`` calls are 18 ms. The same
            order: a directory is watched before it is listed, so whatever appears in it
            after the listing is an event."""
            if self.follow_symlink or not self.is_recursive:
                super()._add_all_callbacks(path)
                return
            if path == self.path and path in deferred:  # the group's own start: see watch()
                self._add_callback(path)
                return
            is_dir = os.path.isdir(path)
            self._add_callback(path)
            pending = [path] if is_dir else []
            while pending:
                try:
                    with os.scandir(pending.pop()) as listing:
                        below = [e.path for e in listing if e.is_dir(follow_symlinks=False)]
                except OSError:
                    continue  # gone or unreadable meanwhile, as os.walk skips it
                for directory in below:
                    self._add_callback(directory)
                pending += below

        def _add_callback(self, path: bytes) -> None:
            """watchdog's, keeping its two maps inverse. A directory moved out and back in
            under another name before the first move was paired is watched again under the
            new path; its old path kept naming the watch, and a later move of the old
            parent re-pointed the watch below the parent's new path: edits in the directory
            were reported under a path of no file, and its package stayed clean with the
            old digest (churn seed 163634105)."""
            try:
                wd = self._inotify_fd.add_callback(path, self.event_mask, self._callback, self._id)
            except OSError:
                if path == self.path:  # a descendant may be gone or unreadable meanwhile
                    raise
                return
            old = self._active_callbacks_by_watch.get(wd) if wd != -1 else None  # -1: EACCES
            if old not in (None, path) and self._active_callbacks_by_path.get(old) == wd:
                del self._active_callbacks_by_path[old]
            self._active_callbacks_by_path[path] = wd
            self._active_callbacks_by_watch[wd] = path

        def _move_watches(self, move_src_path: bytes, move_dst_path: bytes) -> bool:
            """watchdog's, also renaming the paths recorded for unpaired moves pending
            below the moved directory: ``moved_out`` compares them with the watches' paths,
            and took a directory moved out just before its parent moved for one that had
            come back, leaving it watched outside the tree under an inside path (churn
            seed 845798740)."""
            moved: bool = super()._move_watches(move_src_path, move_dst_path)
            below = move_src_path + b"/"
            for records in self.moving.values() if moved else ():
                records[:] = [
                    (wd, move_dst_path + path[len(move_src_path) :])
                    if path == move_src_path or path.startswith(below)
                    else (wd, path)
                    for wd, path in records
                ]
            return moved

        def paired(self, cookie: int) -> None:
            with self._lock:
                self.moving.pop(cookie, None)

    class MoveSafeEmitter(inotify.InotifyEmitter):
        def queue_event(self, event: FileSystemEvent) -> None:
            # Straight to the sink, not through the observer's queue and thread: one
            # thread hand-over fewer per event (a sync query waits for its cookie's).
            # Each root's events still arrive in order, from its one emitter thread.
            if isinstance(event, _SUBSCRIBED):
                sink(event)

        def on_thread_start(self) -> None:
            group = MoveSafeWatchGroup(
                self._inotify_fd,
                os.fsencode(self.watch.path),
                is_recursive=self.watch.is_recursive,
                event_mask=self.get_event_mask_from_filter(),
                follow_symlink=self.watch.follow_symlink,
            )
            # Never a move: none of build_and_queue_event's bookkeeping below applies.
            group.passing.deliver = super().build_and_queue_event
            self._inotify = group

        def build_and_queue_event(self, event: Any, *, full_events: bool = False) -> None:
            group = self._inotify
            if isinstance(group, MoveSafeWatchGroup):
                if not isinstance(event, inotify_move_event_grouper.PathedInotifyEvent):
                    if event[0].ev.is_directory:
                        group.paired(event[0].ev.cookie)
                elif event.ev.is_moved_from and event.ev.is_directory:
                    group.moved_out(event.ev.cookie)
            super().build_and_queue_event(event, full_events=full_events)
            if isinstance(group, MoveSafeWatchGroup):
                group.passing.delivered()

    class ReportingObserver(inotify.InotifyObserver):
        def __init__(self) -> None:
            self._inotify_fd = ReportingInotifyFD()
            self._inotify_fd.start()
            BaseObserver.__init__(self, MoveSafeEmitter, inotify_fd=self._inotify_fd)

    return ReportingObserver()
