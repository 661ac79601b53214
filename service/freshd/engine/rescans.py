"""Rescans: the dirty packages scanned and written back.

The clean write is the engine's most dangerous code: a package is written ``clean`` only
if no event for it arrived while it was being scanned (its sequence number, compared
inside the write transaction, while the queue is drained mid-scan); otherwise it stays
``dirty`` in the same transaction, so that no reader ever sees it clean.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import replace

import lmdb

from freshd.config import Config
from freshd.crawl.indexer import make_pool, rescan_job, scan_packages, store
from freshd.engine.links import HardLinks
from freshd.engine.messages import Message
from freshd.engine.packages import Packages
from freshd.engine.roots import Watching
from freshd.engine.routing import Router
from freshd.engine.structure import Structure
from freshd.engine.sync import Cookies
from freshd.index.writer import Index
from freshd.metrics import Metrics
from freshd_client.spec import schema as sc

_POOL_MIN_PACKAGES = 4  # fewer dirty packages are scanned on the engine thread


class Rescans:
    """Scans what is dirty and writes it back (engine thread only). ``drain`` and
    ``handle``: the engine's queue, handled while a scan runs; ``published``: called
    with the records each write wrote."""

    def __init__(
        self,
        cfg: Config,
        index: Index,
        metrics: Metrics,
        parts: tuple[Packages, HardLinks, Cookies, Watching, Structure, Router],
        pool: Executor | None,
        *,
        drain: Callable[[], list[Message]],
        handle: Callable[[Message], None],
        published: Callable[[list[sc.PackageRecord]], None],
    ) -> None:
        self.cfg = cfg
        self.index = index
        self.metrics = metrics
        self._pk, self._links, self._sync, self._watching, self._structure, self._router = parts
        self.pool = pool  # the hashing processes, made when a rescan needs them
        self.pool_used = 0.0
        self._drain = drain
        self._handle = handle
        self._published = published

    def process(self) -> None:
        """Re-discover changed directories, then scan every dirty package and write it back."""
        if self._structure.dirs:
            self._structure.restructure()
        if self._router.new_names:
            self._links.touch_new_names(self._router.new_names)
            self._router.new_names.clear()
        self._pk.first_event = 0.0
        if not self._pk.dirty:
            return
        batch = {p: seq for p, seq in self._pk.dirty.items() if p in self._pk.tracked}
        changed = {p: rels for p, rels in self._pk.changed.items() if p in batch}
        self._pk.dirty.clear()
        self._pk.changed.clear()
        self._pk.full_scan.clear()
        try:
            self._scan_and_write(batch, changed)
            self._watching.rewatch_due(time.monotonic())  # rescanned by the next process()
        except BaseException:
            for path, seq in batch.items():  # a failed write loses nothing: scan again later
                self._pk.dirty.setdefault(path, seq)
                self._pk.full_scan.add(path)
            raise

    def _scan_and_write(self, batch: dict[str, int], changed: dict[str, set[str]]) -> None:
        outcomes = []
        full = []
        for path in batch:
            # A few files named by events: rehash just those (the common edit).
            targeted = path in changed and not self._pk.tracked[path].never_clean
            quick = (
                rescan_job(self.index, path, changed[path], self._pk.known) if targeted else None
            )
            if quick is None:
                full.append(path)
            else:
                outcomes.append(quick)
        self._pk.trim_known()
        for outcome in scan_packages(self.index, full, self.pool_for(len(full))):
            outcomes.append(outcome)
            for item in self._drain():  # keep marking packages dirty while scanning
                self._handle(item)
            self._pk.flush_marks()
        self.metrics.rescans.inc(len(outcomes))
        for outcome in outcomes:
            self.metrics.rehashed_files.inc(outcome.hashed)
            self.metrics.rehashed_bytes.inc(outcome.hashed_bytes)
            tracked = self._pk.tracked.get(outcome.path)
            if tracked is not None and outcome.error is None and outcome.name != tracked.pkg.name:
                tracked.pkg = replace(tracked.pkg, name=outcome.name)
            if tracked is not None:
                partial = changed.get(outcome.path) if outcome.partial else None
                self._links.table.update(outcome.path, outcome.links, partial)
        self._links.check(set(batch))
        self._watching.verify_watched({o.path: o.dirs for o in outcomes})
        recorded = False

        def write(txn: lmdb.Transaction) -> list[sc.PackageRecord]:
            by_path = {p: self._pk.tracked[p].pkg for p in batch if p in self._pk.tracked}
            kept = [o for o in outcomes if o.path in by_path]
            written = store(self.index, txn, by_path, kept)
            # Changed again while being scanned, or not watchable: stays dirty, in the
            # same transaction, so no reader ever sees it clean.
            failed = {o.path for o in kept if o.error is not None}  # stays "error", says why
            again = [
                p
                for p in by_path
                if self._pk.dirty.get(p, batch[p]) != batch[p]
                or (self._pk.tracked[p].never_clean and p not in failed)
            ]
            redirty = self._pk.mark_dirty(txn, again)
            redirtied = {r.path for r in redirty}
            # Nothing is left to process before a sync's acknowledgement: its direct
            # clients' cookies are recorded with the records they wait for.
            nonlocal recorded
            recorded = bool(self._sync.unrecorded) and not self._pk.dirty
            if recorded:
                self._sync.record(txn)
            return [r for r in written if r.path not in redirtied] + redirty

        self._published(self.index.write(write))
        if recorded:
            self._sync.unrecorded = []

    def pool_for(self, count: int) -> Executor | None:
        if count < _POOL_MIN_PACKAGES or self.cfg.workers <= 1:
            return None
        if self.pool is None:
            self.pool = make_pool(self.cfg.workers)
        self.pool_used = time.monotonic()
        return self.pool
