"""The scrub: a slow, steady ``lstat`` sweep of every file the index holds a record of.

inotify misses some changes: a write through a shared ``mmap`` is reported only when
the last mapping goes (at ``munmap``), a file system mounted over a directory raises
no event, nor does anything written from another machine or a FUSE server. Most of
them still show in ``lstat``: the kernel moves a file's mtime at the first write
through a mapping to a page since that page was last written back. The scrub compares
each stored file record with the file (``FileRecord.reusable_for``: the stat fast path
and its racy rule, so that a record the scan itself would not trust is not trusted
here either) and reports the packages where anything differs or a file vanished; the
engine rescans them.

The bound (docs/reliability.md): every recorded file is compared at least once in any
``period`` seconds. A sweep starts every half period and is paced to end within it, a
slice at each step (a late step takes what it missed), so the first sweep to start
after a change ends less than a period after it, whatever the order of the files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection

import lmdb

from freshd.index.writer import Index
from freshd_client.spec import schema as sc

STEP_SECONDS = 1.0
"""How often a sweep takes its next slice (a wake-up of the engine while sweeping)."""
MIN_SLICE = 256
"""Files ``lstat``-ed at least per step: a small tree is swept in one step, then rests."""


class Scrub:
    """Compares every stored file record of the packages it is handed with the disk at
    least once per ``period`` seconds (0: never). Driven by the engine's thread: ``due``
    says when to call ``step`` next."""

    def __init__(self, index: Index, period: float, *, step_seconds: float = STEP_SECONDS):
        self.index = index
        self.period = period
        self.step_seconds = min(step_seconds, period / 2)  # a short period is kept too
        self.checked = 0  # files compared, in every sweep so far
        self.sweeps = 0  # sweeps completed
        self._next: float | None = None  # when the next step is due (monotonic)
        self._start = 0.0  # when this sweep began
        self._total = 0  # files recorded when it began
        self._done = 0  # files compared in it so far
        self._packages: list[str] = []  # left in this sweep, the next last
        self._current = ""
        self._prefix = ""  # the current package's path and a slash
        self._records: list[sc.FileRecord] = []  # left of the current package, next last

    def due(self) -> float | None:
        """The monotonic time the next ``step`` has work; None when disabled."""
        if self.period <= 0:
            return None
        return self._next

    def step(self, now: float, packages: Collection[str]) -> list[str]:
        """Compare the next slice of files with their records (nothing before ``due``);
        the packages of ``packages`` in which a file changed or vanished."""
        if self.period <= 0:
            return []
        half = self.period / 2
        if self._next is None:  # the start-up crawl has just compared everything
            self._next = now + half
            return []
        if now < self._next:
            return []
        if not self._packages and not self._records:
            self._begin(now, packages)
        # On schedule to end a step before the half period is over, late steps included.
        elapsed = min(1.0, (now - self._start + self.step_seconds) / half)
        budget = max(MIN_SLICE, math.ceil(self._total * elapsed) - self._done)
        changed: list[str] = []
        while budget > 0 and (self._records or self._packages):
            if not self._records:
                self._current = self._packages.pop()
                if self._current in packages:
                    self._records = self._load(self._current)
                continue
            take = self._records[-budget:]
            del self._records[-budget:]
            budget -= len(take)
            self._done += len(take)
            self.checked += len(take)
            if self._current in packages and not all(map(self._unchanged, take)):
                changed.append(self._current)
                self._records.clear()  # rescanned whole: the rest need no look
        if self._records or self._packages:
            self._next = now + self.step_seconds
        else:
            self.sweeps += 1
            self._next = max(self._start + half, now + self.step_seconds)
        return changed

    def _begin(self, now: float, packages: Collection[str]) -> None:
        """Start a sweep over ``packages``."""
        self._start, self._done = now, 0
        self._packages = sorted(packages, reverse=True)
        self._total = sum(self.index.read(lambda txn: self._counts(txn, self._packages)))

    def _counts(self, txn: lmdb.Transaction, paths: list[str]) -> list[int]:
        db = self.index.dbs[sc.DB_PACKAGES]
        records = (sc.get_package(txn, db, path) for path in paths)
        return [record.files if record is not None else 0 for record in records]

    def _load(self, package: str) -> list[sc.FileRecord]:
        self._prefix = package.rstrip("/") + "/"
        return list(reversed(self.index.file_records(package).values()))

    def _unchanged(self, record: sc.FileRecord) -> bool:
        try:
            st = os.lstat(self._prefix + record.rel)
        except OSError:
            return False  # gone, or no longer examinable: the rescan says which
        return record.reusable_for(st)
