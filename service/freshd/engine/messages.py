"""The messages on the engine's queue, one frozen dataclass each, dispatched by type.

Every producer runs on another thread (watchdog's observer, the mount watcher, the API)
and only puts a message; the engine thread alone acts on them, in order
(``Engine._handle``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from watchdog.events import FileSystemEvent

Done = Callable[[BaseException | None], None]
"""Called on the engine thread with the command's error, or None once it is done."""


@dataclass(frozen=True, slots=True)
class Event:
    """A file-system event of a watched root (not a canary: those are noted on arrival)."""

    event: FileSystemEvent


@dataclass(frozen=True, slots=True)
class Overflow:
    """The kernel's event queue overflowed: events were lost, every root is rescanned."""


@dataclass(frozen=True, slots=True)
class Remount:
    """File systems were mounted or unmounted at these mount points."""

    points: frozenset[str]


@dataclass(frozen=True, slots=True)
class AddRoot:
    """Start following ``root`` (canonical); ``done`` once it is crawled."""

    root: str
    done: Done


@dataclass(frozen=True, slots=True)
class RemoveRoot:
    """Stop following ``root``; its packages leave the index."""

    root: str
    done: Done


@dataclass(frozen=True, slots=True)
class Stop:
    """Finish the current step and leave the loop."""


Message = Event | Overflow | Remount | AddRoot | RemoveRoot | Stop
"""Anything the engine's queue carries."""
