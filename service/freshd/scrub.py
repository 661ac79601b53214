"""The scrub: a slow, steady ``lstat`` sweep of every file the index holds a record of.

inotify misses some changes: a write through a shared ``mmap`` is reported only when
the last mapping goes (at ``munmap``), a file system mounted over a directory raises
no event, nor does anything written from another machine or a FUSE server. Most of
them still show in ``lstat``: the kernel moves a file's mtime at the first write
through a mapping to a page since that page was last written back. The scrub compares
each stored file record with the file (``FileRecord.reusable_for``: the stat fast path
and its racy rule, so that a record the scan itself would not trust is not trusted
here either) and reports the packages where anything differs or a file vanished; the
engine rescans them. A full sweep is spread over the period, a slice at each step, so
that its cost stays small and even; the next sweep starts one period after the last.

The bound (docs/reliability.md): a change that moves a file's size, mtime, ctime,
inode, device or type is seen within one period and one step, then one rescan.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection

import lmdb

from freshd.index import Index
from freshd_client import schema as sc

STEP_SECONDS = 1.0
"""How often a sweep takes its next slice (a wake-up of the engine while sweeping)."""
MIN_SLICE = 256
"""Files ``lstat``-ed at least per step: a small tree is swept in one step, then rests."""


class Scrub:
    """Sweeps the stored file records of the packages it is handed, ``period`` seconds
    a sweep (0: never). Driven by the engine's thread: ``due`` says when to call
    ``step`` next."""

    def __init__(self, index: Index, period: float, *, step_seconds: float = STEP_SECONDS):
        self.index = index
        self.period = period
        self.step_seconds = step_seconds
        self.checked = 0  # files compared, in every sweep so far
        self.sweeps = 0  # sweeps completed
        self._next: float | None = None  # when the next step is due (monotonic)
        self._sweep_due = 0.0
        self._slice = MIN_SLICE
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
        if self._next is None:  # the first sweep: one period after the start-up crawl
            self._next = self._sweep_due = now + self.period
            return []
        if now < self._next:
            return []
        if not self._packages and not self._records:
            self._begin(now, packages)
        changed: list[str] = []
        budget = self._slice
        while budget > 0 and (self._records or self._packages):
            if not self._records:
                self._current = self._packages.pop()
                if self._current in packages:
                    self._records = self._load(self._current)
                continue
            take = self._records[-budget:]
            del self._records[-budget:]
            budget -= len(take)
            self.checked += len(take)
            if self._current in packages and not all(map(self._unchanged, take)):
                changed.append(self._current)
                self._records.clear()  # rescanned whole: the rest need no look
        if self._records or self._packages:
            self._next = now + self.step_seconds
        else:
            self.sweeps += 1
            self._next = max(self._sweep_due, now + self.step_seconds)
        return changed

    def _begin(self, now: float, packages: Collection[str]) -> None:
        """Start a sweep over ``packages``, in slices that spread it over the period."""
        self._sweep_due = now + self.period
        self._packages = sorted(packages, reverse=True)
        total = sum(self.index.read(lambda txn: self._counts(txn, self._packages)))
        steps = max(1.0, self.period / self.step_seconds)
        self._slice = max(MIN_SLICE, math.ceil(total / steps))

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
