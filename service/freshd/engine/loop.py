"""The engine: turns file-system events into rehashes and index writes.

It runs on one thread, the index's only writer besides the heartbeat. The
freshness protocol (DESIGN.md's invariant):

1. An event marks its package ``dirty`` in LMDB at once (a tiny transaction),
   before anything is rehashed.
2. Events are coalesced for a short settle window, then every dirty package is
   scanned (stat fast path with the racy rule; changed files hashed and
   re-``stat``ed after hashing).
3. A package is written back ``clean`` with a new generation only if no event
   for it arrived while it was being scanned; otherwise it stays ``dirty`` and
   is scanned again.
4. A cookie file seen by the watcher (``sync`` queries) is acknowledged only
   after every event received before it has been processed, so a ``sync``
   answer reflects every change made before the query.

Overflowed event queues mark every package dirty and rescan; a root whose
directories cannot all be watched (the inotify watch limit) keeps its packages
``dirty`` and is rescanned periodically, so it is never reported fresh.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any

from watchdog.events import (
    EventsLostEvent,
    FileSystemEvent,
)
from watchdog.observers.api import BaseObserver

from freshd.config import Config
from freshd.crawl.indexer import (
    index_roots,
    make_pool,
)
from freshd.engine.commands import add_root, remount, remove_root, rescan_watched
from freshd.engine.links import HardLinks
from freshd.engine.messages import (
    AddRoot,
    Event,
    Message,
    Overflow,
    Remount,
    RemoveRoot,
    Stop,
)
from freshd.engine.packages import (
    Packages,
)
from freshd.engine.rescans import Rescans
from freshd.engine.roots import RootState, Watching
from freshd.engine.routing import Router
from freshd.engine.source import SourceFactory
from freshd.engine.status import forget_others, problems, record_roots, write_daemon
from freshd.engine.structure import Structure
from freshd.engine.sync import COOKIE_POLL_SECONDS, Cookies, unlink
from freshd.index.writer import Index
from freshd.metrics import Metrics
from freshd.watch.mounts import MountWatcher
from freshd.watch.scrub import Scrub
from freshd.watch.watcher import Watcher
from freshd_client.errors import FreshdError
from freshd_client.spec import schema as sc

log = logging.getLogger("freshd.engine")

Publish = Callable[[str, dict[str, Any]], None]
"""Called with ("package", PackageInfo) or ("removed", {"path": …}) after each write."""

_MAX_SETTLE_FACTOR = 20  # a steady stream of events is processed at least this often
_POOL_IDLE_SECONDS = 60.0


class _StopRequestedError(Exception):
    """Raised inside the initial crawl when the daemon is asked to stop."""


class Engine:
    """Keeps the index current for a set of roots. ``start()``, then ``stop()``."""

    def __init__(
        self,
        index: Index,
        cfg: Config,
        roots: Iterable[str],
        *,
        metrics: Metrics | None = None,
        publish: Publish | None = None,
        on_fatal: Callable[[], None] | None = None,
        pool: Executor | None = None,
        observer: Callable[[], BaseObserver] | None = None,
        source: SourceFactory | None = None,
    ) -> None:
        """``pool``: the hashing processes of the first crawl, made before (the engine
        shuts it down); by default they start with it. ``observer``: the watchdog
        observer class (tests inject faults with one of their own). ``source``: makes
        the source of events instead of a ``Watcher`` (a test's scripted one)."""
        self.index = index
        self.cfg = cfg
        self.metrics = metrics or Metrics()
        self.status: sc.DaemonStatus = "starting"
        self.progress: tuple[int, int] | None = None
        self.started_ns = time.time_ns()
        self.last_error: str | None = None
        self.fatal: str | None = None  # the engine died: the daemon must exit
        self.ready = threading.Event()  # set once the first crawl is done and written
        self.scanning = threading.Event()  # set once the first crawl's workers are busy
        self._on_fatal = on_fatal or (lambda: None)
        self.roots: dict[str, RootState] = {r: RootState(r) for r in roots}
        self._publish = publish or (lambda kind, data: None)
        self._held: list[tuple[str, dict[str, Any]]] | None = None  # see _answer_cookies
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._sync = Cookies(index)
        self._pk = Packages(index, self._published)
        self._links = HardLinks(
            index, self._pk, self.metrics, cfg.scrub_seconds, self._pk.flush_marks
        )
        self._next_package_poll = 0.0
        self._writes_failing = False
        self._overflowed = False
        self._overflow_logged = -1e9
        self._stopping = threading.Event()
        make = source or (lambda sink: Watcher(sink, *([observer] if observer else [])))
        events = make(self._on_watch_event)
        self._structure = Structure(
            cfg,
            index,
            self.roots,
            self._pk,
            self._links,
            events,
            self.metrics,
            flush=self._pk.flush_marks,
            emit=self._emit,
        )
        self._watching = Watching(
            cfg,
            events,
            self.roots,
            self._pk,
            self._sync,
            rescan_root=self._structure.rescan_root,
            root_gone=self._structure.root_gone,
        )
        self._router = Router(
            self.roots, self._pk, self._links, self._sync, self._watching, self._structure
        )
        self._rescans = Rescans(
            cfg,
            index,
            self.metrics,
            (self._pk, self._links, self._sync, self._watching, self._structure, self._router),
            pool,
            drain=self._drain,
            handle=self._handle,
            published=self._published,
        )
        # What inotify cannot see (issue 17): mounts, and a stat sweep for the rest.
        self._mounts = MountWatcher(lambda points: self._queue.put(Remount(frozenset(points))))
        self._scrub = Scrub(index, cfg.scrub_seconds)
        self._thread = threading.Thread(target=self._run, name="freshd-engine", daemon=True)
        self._heartbeat = threading.Thread(target=self._beat, name="freshd-heartbeat", daemon=True)

    def _on_watch_event(self, event: FileSystemEvent) -> None:
        """On the source's thread: hand the event over (a canary is noted at once)."""
        if isinstance(event, EventsLostEvent):
            self._queue.put(Overflow())
        elif self._watching.arrived(event):
            self._queue.put(Event(event))

    def start(self) -> None:
        """Watch the roots, then crawl them on the engine thread; returns at once."""
        self._write_daemon("starting")
        self._mounts.start()
        self._watching.source.start()
        self._thread.start()
        self._heartbeat.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current step, stop watching, and record the daemon as stopped."""
        self._stopping.set()
        self._queue.put(Stop())
        self._thread.join(timeout)
        self._heartbeat.join(timeout)
        stuck = self._thread.is_alive()
        if stuck:  # never hang a shutdown: say where the engine is, then leave it behind
            log.error("the engine did not stop within %.0f s; its stack follows", timeout)
            faulthandler.dump_traceback(all_threads=True)
        self._watching.source.stop()
        self._mounts.stop()
        if self._rescans.pool is not None:
            self._rescans.pool.shutdown(wait=not stuck, cancel_futures=True)
            self._rescans.pool = None
        self.status = "stopped"
        if not stuck:  # a stuck engine may hold the write lock; its heartbeat lapses anyway
            self._write_daemon("stopped")

    def root_of(self, path: str) -> str | None:
        """The root ``path`` is in (any thread)."""
        return self._watching.root_of(path)

    # -- driving the loop from the calling thread (tests, with a scripted source) ------

    def crawl(self) -> None:
        """Watch the roots and crawl them on the calling thread, instead of ``start``:
        then ``step`` runs the loop one step at a time, and ``close`` ends it."""
        self._watching.source.start()
        self._crawl_at_start()

    def step(self) -> None:
        """Handle every message queued, then process what is dirty without waiting for
        the settle window, and run the periodic checks (``_tick``)."""
        self._step(block=False)

    def close(self) -> None:
        """End an engine driven by ``crawl`` and ``step``."""
        self._stopping.set()
        self._leave_no_litter()
        self._watching.source.stop()
        if self._rescans.pool is not None:
            self._rescans.pool.shutdown(wait=True, cancel_futures=True)
            self._rescans.pool = None

    @property
    def alive(self) -> bool:
        """Whether the engine thread is running."""
        return self._thread.is_alive()

    def problems(self) -> dict[str, str]:
        """Why a root's packages, or some of them, answer unknown (any thread)."""
        return problems(self.roots, self._pk.tracked)

    def pending(self) -> int:
        """Events and packages waiting to be processed."""
        return self._queue.qsize() + len(self._pk.dirty) + len(self._pk.newly_dirty)

    # -- requests from the API (any thread) -------------------------------------

    def sync(self, roots: Iterable[str], done: Callable[[bool], None]) -> Callable[[], None]:
        """Write a cookie into each root; ``done(True)`` once the engine has processed
        every event received before them, ``done(False)`` if a cookie cannot be written.
        Returns a function that cancels the wait."""
        return self._sync.request(roots, done)

    def add_root(self, root: str, done: Callable[[BaseException | None], None]) -> None:
        """Start following ``root`` (canonical); ``done(error or None)`` when crawled."""
        self._queue.put(AddRoot(root, done))

    def remove_root(self, root: str, done: Callable[[BaseException | None], None]) -> None:
        """Stop following ``root``; its packages leave the index."""
        self._queue.put(RemoveRoot(root, done))

    # -- the engine thread ------------------------------------------------------

    def _run(self) -> None:
        try:
            try:
                self._crawl_at_start()
            except _StopRequestedError:
                return
            try:
                while not self._stopping.is_set():
                    try:
                        self._step()
                    except FreshdError as exc:  # the index cannot be written (disk full, …)
                        self._failed(str(exc))
            finally:
                self._leave_no_litter()
        except Exception as exc:
            log.exception("freshd engine stopped by an unexpected error")
            self.fatal = f"engine stopped: {exc!r}"
            self._on_fatal()

    def _leave_no_litter(self) -> None:
        """Delete the cookies acknowledged, and the canaries not back yet."""
        self._sync.unlink_all()
        for state in self.roots.values():
            if state.canary is not None:
                unlink(state.canary)

    def _failed(self, message: str) -> None:
        if not self._writes_failing:
            log.error("index writes failing, answers are unknown until they succeed: %s", message)
        self.last_error = message
        self._writes_failing = True  # the heartbeat stops: readers answer "unknown"
        self._stopping.wait(0.5)

    def _crawl_at_start(self) -> None:
        self.status = "indexing"
        self.index.write(lambda txn: record_roots(self.index, self.roots, txn))
        self._rescans.pool = self._rescans.pool or make_pool(self.cfg.workers)
        # Watched before the crawl lists anything, so that no change is lost.
        for state in self.roots.values():
            self._watching.watch(state)
        self._rescans.pool_used = time.monotonic()
        crawlable = [r for r, s in self.roots.items() if s.mode != "missing"]
        summary = index_roots(
            self.index,
            crawlable,
            workers=self.cfg.workers,
            progress=self._on_progress,
            pool=self._rescans.pool,
        )
        for problem in summary.errors:
            log.warning("%s", problem)
        for pkg in summary.found:
            self._structure.track(pkg)
        for path, links in summary.links.items():
            self._links.table.update(path, links, None)
        self._links.check(set(summary.links))
        # Not ready (so never fresh) until now: a package with a directory the kernel
        # does not watch is kept dirty.
        for path in self._watching.verify_watched(summary.dirs):
            self._pk.touch(path)
        self.index.write(lambda txn: forget_others(self.index, self._pk.tracked, self.roots, txn))
        self._queue_polled()
        # Events received during the crawl: their packages are rescanned before `ready`.
        self._step(block=False)
        while (
            self._pk.dirty or self._structure.dirs or self._pk.newly_dirty or self._router.new_names
        ):
            self._step(block=False)
        self.progress = None
        self.status = "ready"
        self._write_daemon("ready")
        self.ready.set()
        log.info(
            "ready: %d packages, %d files (hashed %d, reused %d) in %.2f s",
            summary.packages,
            summary.files,
            summary.hashed,
            summary.reused,
            summary.seconds,
        )

    def _on_progress(self, done: int, total: int) -> None:
        if self._stopping.is_set():
            raise _StopRequestedError  # abandon the crawl: nothing was declared ready
        self.progress = (done, total)
        self.scanning.set()

    def _step(self, *, block: bool = True) -> None:
        timeout = self._timeout() if block else 0.0
        items: list[Message] = []
        with contextlib.suppress(queue.Empty):
            items.append(self._queue.get(timeout=timeout) if block else self._queue.get_nowait())
        items.extend(self._drain())
        for item in items:
            self._handle(item)
        if self._overflowed:
            self._recover_overflow()
        self._pk.flush_marks()
        now = time.monotonic()
        if self._sync.seen:
            self._answer_cookies()
        elif (self._pk.dirty or self._structure.dirs or self._router.new_names) and (
            not block or now >= self._settle_deadline()
        ):
            self._rescans.process()
        self._tick(now)
        self.metrics.queue_depth.set(self._queue.qsize())
        self.metrics.dirty.set(len(self._pk.dirty))

    def _answer_cookies(self) -> None:
        """Process everything received before the cookies seen, then acknowledge them.

        What this writes reaches the events stream after the acknowledgement: the event
        loop runs what it is handed in order, and the waiting queries come first."""
        cookies = self._sync.take()
        self._held = []
        try:
            for path in sorted(self._pk.never_clean):
                if self._pk.tracked[path].rehash_for_sync:  # no event tells: rehash first
                    self._pk.touch(path)
            self._rescans.process()
            # Processing can find other packages stale (a hard link lost its other name):
            # rehash them too, and at least mark them dirty, before the answer.
            for _ in range(2):
                if not self._pk.dirty:
                    break
                self._pk.flush_marks()
                self._rescans.process()
            self._pk.flush_marks()
            self._sync.ack(cookies)
        finally:
            self._sync.unrecorded = []
            held, self._held = self._held, None
            for kind, data in held:
                self._publish(kind, data)

    def _drain(self) -> list[Message]:
        items: list[Message] = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _timeout(self) -> float | None:
        if self._sync.seen:
            return 0.0  # seen while scanning: no later event may come to acknowledge it
        deadlines = []
        if self._pk.dirty or self._structure.dirs or self._router.new_names:
            deadlines.append(self._settle_deadline())
        if any(s.mode != "watching" for s in self.roots.values()) or self._pk.never_clean:
            deadlines.append(time.monotonic() + COOKIE_POLL_SECONDS)
        if self.status == "ready":
            for state in self.roots.values():
                if state.canary is not None:
                    # Its event is noted on the watcher's thread: look soon after it is due.
                    deadlines.append(
                        min(
                            state.canary_sent + 2 * self.cfg.canary_seconds,
                            time.monotonic() + COOKIE_POLL_SECONDS,
                        )
                    )
                elif state.mode in ("watching", "blind"):
                    deadlines.append(state.next_canary)
                if state.rewatch is not None:
                    deadlines.append(state.rewatch)
        if self._rescans.pool is not None:
            deadlines.append(self._rescans.pool_used + _POOL_IDLE_SECONDS)
        if self._sync.unlink_later:
            deadlines.append(self._sync.unlink_at)
        if (scrub := self._scrub.due()) is not None:
            deadlines.append(scrub)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _settle_deadline(self) -> float:
        settle = self.cfg.settle_ms / 1000
        return min(self._pk.last_event + settle, self._pk.first_event + settle * _MAX_SETTLE_FACTOR)

    def _handle(self, message: Message) -> None:
        match message:
            case Event(event):
                self.metrics.events.inc()
                self._router.route(event)
            case Overflow():
                self.metrics.overflows.inc()
                self._overflowed = True  # handled once per step, however many arrive
            case AddRoot(root, done):
                self._command(done, self._add_root, root)
            case RemoveRoot(root, done):
                self._command(done, self._remove_root, root)
            case Remount(points):
                remount(points, self.roots, self._structure, self._watching, self._sync)
            case Stop():
                self._stopping.set()

    def _recover_overflow(self) -> None:
        self._overflowed = False
        now = time.monotonic()
        if now - self._overflow_logged > 10:
            self._overflow_logged = now
            log.warning("the kernel's event queue overflowed: every root is rescanned")
        rescan_watched(self.roots, self._structure, self._sync)

    def _command(
        self, done: Callable[[BaseException | None], None], fn: Callable[[str], None], root: str
    ) -> None:
        try:
            fn(root)
        except Exception as exc:
            done(exc)
        else:
            done(None)

    def _queue_polled(self) -> None:
        """Rescan the packages that are never clean for a cause a rescan may clear.

        A package holding a hard link with a name outside every watched file set is not
        rescanned: it answers unknown (never fresh) whatever a rehash finds, and the
        rehash of thousands of them every few seconds (a uv cache linked into packages)
        was the daemon's whole load. A write through the other name moves the shared
        inode's mtime and ctime, and losing that name its ctime: the stat sweep
        (``freshd.watch.scrub``) finds both, and an event on any name in a file set rescans it
        at once."""
        for path in sorted(self._pk.never_clean):
            if self._pk.tracked[path].rescanned:
                self._pk.touch(path)

    def _tick(self, now: float) -> None:
        if self._sync.unlink_later and now >= self._sync.unlink_at:
            self._sync.unlink_all()
        if self._rescans.pool is not None and now - self._rescans.pool_used > _POOL_IDLE_SECONDS:
            self._rescans.pool.shutdown(wait=False)
            self._rescans.pool = None
        for root, state in list(self.roots.items()):
            if self.status == "ready" and state.mode in ("watching", "blind"):
                self._watching.canary(state, now)
            if state.mode == "watching":
                continue
            self._sync.poll(root)
            if now < state.next_poll:
                continue
            state.next_poll = now + self.cfg.rescan_seconds
            self._watching.rewatch(state)
        self._watching.rewatch_due(now)
        for path in self._scrub.step(now, self._pk.tracked.keys()):
            self._pk.touch(path)
        if now >= self._next_package_poll and self._pk.never_clean:
            self._next_package_poll = now + self.cfg.rescan_seconds
            self._queue_polled()
        if self._writes_failing:
            self._write_daemon(self.status)  # raises while the index still cannot be written
            self._writes_failing = False
            self.last_error = None
            log.info("index writes succeed again")

    def _add_root(self, root: str) -> None:
        if add_root(root, self.roots, self._watching, self._structure, self.index):
            self._rescans.process()
        self._write_daemon(self.status)

    def _remove_root(self, root: str) -> None:
        remove_root(root, self.roots, self._watching, self._structure, self._pk, self.index)
        self._write_daemon(self.status)

    def _write_daemon(self, status: sc.DaemonStatus) -> None:
        write_daemon(self.index, self.cfg, self.started_ns, status)

    def _beat(self) -> None:
        interval = sc.HEARTBEAT_NS / 1e9
        while not self._stopping.wait(interval):
            # A dead engine, or one whose writes fail, must let readers' liveness lapse.
            if not self._thread.is_alive() or self._writes_failing:
                continue
            try:
                self._write_daemon(self.status)
            except FreshdError as exc:
                self.last_error = str(exc)

    def _published(self, records: list[sc.PackageRecord]) -> None:
        for record in records:
            self._emit("package", record.info())

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        if self._held is None:
            self._publish(kind, data)
        else:
            self._held.append((kind, data))
