"""How a root is followed: its mode, and why it is not watched."""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from watchdog.events import FileCreatedEvent, FileSystemEvent

from freshd.config import Config
from freshd.crawl.indexer import DirIdentity
from freshd.engine.packages import Packages
from freshd.engine.source import EventSource
from freshd.engine.sync import Cookies, unlink
from freshd.watch.watcher import identity, max_user_watches
from freshd.watch.watchset import Identity
from freshd_client.spec.schema import COOKIE_PREFIX

log = logging.getLogger("freshd.engine")

CANARY_PREFIX = f"{COOKIE_PREFIX}live-"  # the liveness cookies written into each root

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


def root_of(roots: Iterable[str], path: str) -> str | None:
    """The root of ``roots`` that ``path`` is in (any thread: ``roots`` is copied)."""
    for root in tuple(roots):
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return root
    return None


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


def blind_spot(package: str, rel: str) -> tuple[str, bool]:
    """Why the directory ``rel`` of ``package`` is not watched, naming it; and whether
    the daemon may read it (else watching it anew is no use)."""
    path = os.path.join(package, rel) if rel else package
    readable = os.access(path, os.R_OK | os.X_OK)
    if os.path.ismount(path):
        cause = "a file system was mounted there after it was watched"
    elif not readable:
        cause = "permission denied"
    else:
        cause = (
            "the watch could not be added (is fs.inotify.max_user_watches="
            f"{max_user_watches()} reached? raise it with sysctl)"
        )
    return f"{path} is not watched: {cause}", readable


class Watching:
    """Whether each root's events can be trusted: its watch, its canary, the kernel's
    list of watches (engine thread, except ``arrived`` and ``root_of``).
    ``rescan_root`` and ``root_gone``: ``Structure``'s, called when a root is watched
    anew or found gone."""

    def __init__(
        self,
        cfg: Config,
        source: EventSource,
        roots: dict[str, RootState],
        packages: Packages,
        sync: Cookies,
        *,
        rescan_root: Callable[[str], None],
        root_gone: Callable[[str], None],
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.roots = roots
        self._pk = packages
        self._sync = sync
        self._rescan_root = rescan_root
        self._root_gone = root_gone
        self.kernel: frozenset[Identity] | None = None  # watchset.watched(), while current
        self._canaries_seen: dict[str, float] = {}  # canary path → when the watcher gave it
        self._heard: dict[str, float] = {}  # root → when the watcher last gave one of its events
        self._canary_arrived = threading.Event()
        self._canary_ids = itertools.count(1)

    def arrived(self, event: FileSystemEvent) -> bool:
        """On the source's thread: note when a root was last heard from, and a canary's
        arrival (so that a busy engine thread is not taken for a deaf watcher). Whether
        the event goes on to the engine's queue (a canary does not)."""
        path = os.fsdecode(event.src_path)
        root = self.root_of(path)
        if root is not None:
            self._heard[root] = time.monotonic()
        if os.path.basename(path).startswith(CANARY_PREFIX):
            if isinstance(event, FileCreatedEvent):
                self._canaries_seen[path] = time.monotonic()
                self._canary_arrived.set()
            return False
        return True

    def root_of(self, path: str) -> str | None:
        return root_of(self.roots, path)

    def watch(self, state: RootState) -> bool:
        """Watch a root and everything below it; whether the root could be watched (else
        it is polled, or missing). What below it could not be watched, the scans find
        (``verify_watched``)."""
        if not os.path.isdir(state.path):
            state.mode, state.reason = "missing", "the directory does not exist"
            log.warning("root %s does not exist; waiting for it to appear", state.path)
            return False
        self.kernel = None
        try:
            self.source.watch(state.path)
        except OSError as exc:
            self.source.unwatch(state.path)
            self.poll(state, watch_error(exc))
            return False
        if state.mode != "blind":  # a blind root sees again only once its canary returns
            state.mode, state.reason = "watching", None
        return True

    def poll(self, state: RootState, reason: str, mode: RootMode = "polling") -> None:
        """Stop trusting a root's events: its packages are never reported clean and the
        root is watched again and rescanned every ``rescan_seconds``."""
        already = state.reported == reason
        state.mode, state.reason, state.reported = mode, reason, reason
        state.next_poll = time.monotonic() + self.cfg.rescan_seconds
        if already:
            log.debug("%s: still %s", state.path, reason)
        else:
            log.warning(
                "%s: %s; its packages stay unknown (never fresh) and are rescanned every %.0f s",
                state.path,
                reason,
                self.cfg.rescan_seconds,
            )
        for tracked in self._pk.tracked.values():
            if tracked.pkg.root == state.path:
                tracked.polled = True
                self._pk.note_never_clean(tracked.pkg.path)
                self._pk.touch(tracked.pkg.path)

    def rewatch(self, state: RootState) -> None:
        """Watch a root anew and rescan it: events of the moment between are lost."""
        self.source.unwatch(state.path)
        was = state.mode
        if self.watch(state) and was == "polling":
            state.reported = None
            log.info("watching %s again", state.path)
        if state.mode != "missing":
            self._rescan_root(state.path)

    def rewatch_due(self, now: float) -> None:
        """Watch anew the roots where a scan found a directory not watched."""
        for state in list(self.roots.values()):
            if state.rewatch is not None and now >= state.rewatch:
                state.rewatch = None
                if state.mode == "watching":
                    self.rewatch(state)

    def canary(self, state: RootState, now: float) -> None:
        """The proof that a root's watch delivers: a cookie written into the root every
        ``canary_seconds`` must come back as an event within twice that. When it does not,
        the root is blind: its packages answer unknown on every transport (they stay
        dirty in the index) until a canary comes back and the root has been rescanned.
        A fast answer is thus at most 3 * ``canary_seconds`` behind a deaf watcher.
        The root's identity is checked too: a root renamed away is no event at all."""
        period = self.cfg.canary_seconds
        if state.canary is not None:
            late = now - state.canary_sent
            if self._canaries_seen.pop(state.canary, None) is not None:
                unlink(state.canary)  # now: the engine is awake anyway
                state.canary = None
                if state.suspect_at is not None and state.canary_sent >= state.suspect_at:
                    state.suspect_at = None  # every event before it is in: look again
                    for path, tracked in self._pk.tracked.items():
                        if tracked.suspect and tracked.pkg.root == state.path:
                            self._pk.touch(path)
                if state.mode == "blind":
                    log.info("%s: events arrive again; rescanning it", state.path)
                    state.mode, state.reason, state.reported = "watching", None, None
                    self._rescan_root(state.path)
            elif late > 2 * period and (
                # Other events of the root since it was written: a backlog, not a deaf
                # watcher (a burst of thousands of directories); up to a point.
                self._heard.get(state.path, 0.0) < state.canary_sent or late > 10 * period
            ):
                self._sync.unlink_soon([state.canary])  # should it come late, it is ignored
                state.canary = None
                if state.mode == "watching":
                    reason = f"the watcher delivered no event for {late:.1f} s"
                    self.poll(state, reason, mode="blind")
        if state.canary is not None or now < state.next_canary:
            return
        current = identity(state.path)
        if current is None or current != self.source.watched_identity(state.path):
            self._root_gone(state.path)  # renamed away, or replaced: watched anew when back
            return
        path = os.path.join(state.path, f"{CANARY_PREFIX}{os.getpid()}-{next(self._canary_ids)}")
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        except OSError as exc:
            if state.mode == "watching":
                self.poll(state, f"cannot write a liveness cookie: {exc.strerror or exc}", "blind")
            state.next_canary = now + period
            return
        state.canary, state.canary_sent, state.next_canary = path, now, now + period

    def verify_watched(self, dirs: Mapping[str, list[DirIdentity] | None]) -> list[str]:
        """Check that the kernel watches every directory each package's scan listed
        (``dirs``, by package). watchdog skips a directory it cannot watch without a word;
        a package with such a blind spot is never reported clean, and its root is watched
        anew (``RootState.rewatch``) until the kernel lists the directory.

        A directory created lately may be unwatched only because its creation event is
        still on its way (watchdog watches it on that event, and reports what was made in
        it meanwhile): a canary round trip through its root settles it. Should the canary
        be late, the package stays dirty (``suspect``) until the next one is back and it
        has been scanned again. Returns the packages with a directory not watched."""
        if not self.source.lists_watches():
            return []
        missing = {}
        for path, listed in dirs.items():
            tracked = self._pk.tracked.get(path)
            if tracked is None or listed is None:
                continue
            state = self.roots.get(tracked.pkg.root)
            if state is not None and state.mode == "watching":  # else: never clean anyway
                missing[path] = self._unwatched(path, listed)
        waited = {self._pk.tracked[p].pkg.root for p, dirs_ in missing.items() if dirs_}
        settled = bool(waited) and self._round_trip(waited, 2 * self.cfg.canary_seconds)
        if settled:
            self.kernel = None
            missing = {p: self._unwatched(p, m) for p, m in missing.items()}
        now = time.monotonic()
        for path, unwatched in missing.items():
            tracked = self._pk.tracked[path]
            reason, readable = (None, True)
            if unwatched and settled:
                reason, readable = blind_spot(path, unwatched[0][0])
            first = reason != tracked.unwatched  # a new cause, or newly readable
            if reason != tracked.unwatched:
                if reason is not None:
                    log.warning("%s; its package stays unknown (never fresh) until it is", reason)
                elif tracked.unwatched is not None:
                    log.info("%s is watched whole again", path)
                tracked.unwatched = reason
            tracked.suspect = bool(unwatched) and not settled
            self._pk.note_never_clean(path)
            state = self.roots.get(tracked.pkg.root)
            if state is None:
                continue
            if reason is not None and readable and state.rewatch is None:
                # Watched anew at once for a new cause (watchdog may have lost track of a
                # directory moved out and back in quickly), then every rescan_seconds. An
                # unreadable one waits for its chmod: the event rescans its package.
                state.rewatch = now + (0.0 if first else self.cfg.rescan_seconds)
            if tracked.suspect and state.suspect_at is None:
                state.suspect_at = now
        return [p for p, unwatched in missing.items() if unwatched]

    def _round_trip(self, roots: set[str], timeout: float) -> bool:
        """Write a canary into each root and wait for the watcher to give each back: then
        every event of those roots from before has been delivered. False on a timeout."""
        paths = []
        flags = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            for root in roots:
                path = os.path.join(root, f"{CANARY_PREFIX}{os.getpid()}-{next(self._canary_ids)}")
                os.close(os.open(path, flags, 0o600))
                paths.append(path)
            deadline = time.monotonic() + timeout
            while True:
                self._canary_arrived.clear()
                if all(p in self._canaries_seen for p in paths):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._canary_arrived.wait(left)
        except OSError:
            return False
        finally:
            for path in paths:
                self._canaries_seen.pop(path, None)
            self._sync.unlink_soon(paths)

    def _unwatched(self, package: str, listed: list[DirIdentity]) -> list[DirIdentity]:
        """The directories of ``listed`` that the kernel does not watch and that are still
        there (one gone or replaced since it was listed is its own event)."""
        kernel = self._kernel_watches()
        missing = [d for d in listed if (d[1], d[2]) not in kernel]
        if missing and self.kernel is not None:
            self.kernel = None  # maybe older than a watch added meanwhile: read it again
            kernel = self._kernel_watches()
            missing = [d for d in missing if (d[1], d[2]) not in kernel]
        return [
            (rel, dev, ino)
            for rel, dev, ino in missing
            if identity(os.path.join(package, rel) if rel else package) == (dev, ino)
        ]

    def _kernel_watches(self) -> frozenset[Identity]:
        if self.kernel is None:
            try:
                self.kernel = self.source.watched_directories()
            except OSError as exc:
                log.warning("cannot read this process's inotify watches: %s", exc)
                return frozenset()  # nothing proven watched: every package is a blind spot
        return self.kernel
