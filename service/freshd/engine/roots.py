"""How a root is followed: its mode, and why it is not watched."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Literal

from freshd.watcher import max_user_watches

RootMode = Literal["watching", "polling", "missing", "blind"]
"""``watching``: events are trusted; ``polling``: the root cannot be watched, it is
rescanned periodically; ``missing``: the directory is gone; ``blind``: the canary did not
come back in time (see ``Engine._canary``)."""


@dataclass(slots=True)
class RootState:
    """How a root is being followed."""

    path: str
    mode: RootMode = "watching"
    reason: str | None = None
    reported: str | None = None  # the last reason logged: each is logged once
    next_poll: float = 0.0
    canary: str | None = None  # the liveness cookie written and not seen yet
    canary_sent: float = 0.0
    next_canary: float = 0.0
    rewatch: float | None = None  # when to watch it again: a directory below is not watched
    suspect_at: float | None = None  # since when a package of it is ``Tracked.suspect``


def under_any(path: str, dirs: set[str]) -> bool:
    current = path
    while True:
        if current in dirs:
            return True
        parent = os.path.dirname(current)
        if parent == current:
            return False
        current = parent


def watch_error(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:  # from inotify_add_watch
        return (
            "inotify watch limit reached (fs.inotify.max_user_watches="
            f"{max_user_watches()}; raise it with sysctl)"
        )
    return f"cannot watch: {exc.strerror or exc}"
