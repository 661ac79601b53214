"""A scripted event source for the engine: the test hands it watchdog's own event
objects, in-process, in the order it chooses (as watchfiles fakes its native watcher).

It watches what it is asked to, and proves every directory below a watched root
watched (a kernel that never misses one); nothing reaches the engine unless the test
emits it — not even the engine's canaries and sync cookies.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from watchdog.events import FileSystemEvent

from freshd.watch.watcher import identity
from freshd.watch.watchset import Identity


class ScriptedSource:
    """An ``freshd.engine.source.EventSource`` that delivers only what ``emit`` is given."""

    def __init__(self, sink: Callable[[FileSystemEvent], None]) -> None:
        self.sink = sink
        self.roots: dict[str, Identity | None] = {}

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.roots.clear()

    def watch(self, root: str) -> None:
        if not os.path.isdir(root):
            raise FileNotFoundError(root)
        self.roots.setdefault(root, identity(root))

    def unwatch(self, root: str) -> None:
        self.roots.pop(root, None)

    def watched_identity(self, root: str) -> Identity | None:
        return self.roots.get(root)

    def lists_watches(self) -> bool:
        return True

    def watched_directories(self) -> frozenset[Identity]:
        found = set()
        for root in self.roots:
            for directory, _dirs, _files in os.walk(root):
                st = os.lstat(directory)
                found.add((st.st_dev, st.st_ino))
        return frozenset(found)

    def emit(self, *events: FileSystemEvent) -> None:
        """Hand these events to the engine, as watchdog's thread would."""
        for event in events:
            self.sink(event)
