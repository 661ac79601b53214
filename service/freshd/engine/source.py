"""Where the engine's events come from: the interface it needs of a watcher.

``freshd.watch.watcher.Watcher`` (watchdog's observer, the kernel's own list of watches) is the
one the daemon uses. A test may give the engine another (``Engine(source=…)``): one
that hands it a scripted sequence of watchdog events, in-process, while the test steps
the loop itself (``Engine.crawl``, ``Engine.step``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from watchdog.events import FileSystemEvent

from freshd.watch.watchset import Identity

Sink = Callable[[FileSystemEvent], None]
"""Where a source hands each event (on the source's own thread: it must not block)."""


class EventSource(Protocol):
    """Watches roots recursively and hands their events to a ``Sink``."""

    def start(self) -> None:
        """Start delivering events."""

    def watch(self, root: str) -> None:
        """Watch ``root`` and everything below it. OSError when the root cannot be."""

    def watched_identity(self, root: str) -> Identity | None:
        """The (device, inode) ``root`` had when its watch was added (None: not watched)."""

    def unwatch(self, root: str) -> None:
        """Stop watching ``root`` (no-op when it is not watched)."""

    def stop(self) -> None:
        """Stop every watch."""

    def lists_watches(self) -> bool:
        """Whether ``watched_directories`` can prove what is watched on this system."""

    def watched_directories(self) -> frozenset[Identity]:
        """The identity of every directory watched now. OSError when it cannot be read."""


SourceFactory = Callable[[Sink], EventSource]
"""Makes the engine's source, given the engine's sink."""
