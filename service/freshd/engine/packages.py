"""The packages the engine follows, and what a directory must be to stay one."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import lmdb

from freshd.crawl.indexer import Known
from freshd.index.writer import Index
from freshd_client.content.discovery import Package
from freshd_client.content.project import is_package_dir
from freshd_client.spec import schema as sc

LINKED_OUT = (
    "a hard-linked file has another name outside every watched file set, through which "
    "it can change with no event: never fresh while it has"
)
"""The ``error`` of a package kept ``dirty`` for a hard link out (``PackageInfo``)."""


@dataclass(slots=True)
class Tracked:
    """A package the engine follows."""

    pkg: Package
    seq: int = 0  # bumped by every event; a scan is kept only if it did not move
    sensitive: bool = False  # [tool.freshd] include or git cache keys: no event is noise
    git_dir: str | None = None  # the repository whose state its meta digest covers
    polled: bool = False  # its inputs cannot be watched: never reported clean
    linked_out: bool = False  # a hard link has a name no event reports: never reported clean
    indirect: bool = False  # a project file read through a symlink: never reported clean
    unwatched: str | None = None  # a directory the kernel does not watch, and why
    suspect: bool = False  # a new directory not watched yet: maybe its event is on its way

    @property
    def never_clean(self) -> bool:
        return (
            self.polled
            or self.linked_out
            or self.indirect
            or self.unwatched is not None
            or self.suspect
        )

    @property
    def rehash_for_sync(self) -> bool:
        """Whether a sync answer rehashes it first: no event tells of its changes."""
        return self.indirect

    @property
    def rescanned(self) -> bool:
        """Whether it is rescanned every ``rescan_seconds``: never clean for a cause a
        rescan can clear. Not for a hard link out alone (``HardLinks.check``)."""
        return self.polled or self.indirect or self.unwatched is not None or self.suspect


def is_package(path: str) -> bool:
    """Whether ``path`` is still a package directory reached by no symlink: a directory
    above it replaced by a link to another tree leads the path elsewhere, and its record
    must go (a query through the link resolves to the other tree's own package)."""
    try:
        return (
            is_real_dir(path)
            and os.path.realpath(path) == path
            and is_package_dir(set(os.listdir(path)))
        )
    except OSError:
        return False


def is_real_dir(path: str) -> bool:
    """A directory, not a symlink to one: a package directory replaced by a link leaves
    its root (the link is recorded as a link, never followed out of the tree)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def workspace_settings(project: Any) -> tuple[Any, Any]:
    if project is None:
        return (None, None)
    return (project.workspace_members, project.workspace_exclude)


_KNOWN_RECORDS = 10_000  # file records kept decoded for targeted rehashes (~0.5 KiB each)


class Packages:
    """The packages followed and their dirty bookkeeping (engine thread only)."""

    def __init__(self, index: Index, published: Callable[[list[sc.PackageRecord]], None]) -> None:
        """``published``: called with the records each write of dirty marks wrote."""
        self.index = index
        self._published = published
        self.tracked: dict[str, Tracked] = {}
        self.never_clean: set[str] = set()  # the tracked packages whose never_clean holds
        self.dirty: dict[str, int] = {}  # package → its seq when marked
        self.newly_dirty: set[str] = set()  # not yet marked in LMDB
        self.changed: dict[str, set[str]] = {}  # dirty package → the files its events named
        self.full_scan: set[str] = set()  # dirty packages that need a whole walk
        self.known: dict[str, Known] = {}  # see rescan_job
        self.first_event = self.last_event = 0.0

    def touch(self, path: str, rel: str | None = None) -> None:
        """Mark a package dirty; ``rel``: the one file that changed (else: rescan it all)."""
        if rel is None or path in self.full_scan:
            self.full_scan.add(path)
            self.changed.pop(path, None)
        else:
            self.changed.setdefault(path, set()).add(rel)
        tracked = self.tracked[path]
        tracked.seq += 1
        if path not in self.dirty:
            self.newly_dirty.add(path)
        self.dirty[path] = tracked.seq
        self.note_event()

    def note_event(self) -> None:
        now = time.monotonic()
        if self.first_event == 0.0:
            self.first_event = now
        self.last_event = now

    def note_never_clean(self, path: str) -> None:
        """Keep ``never_clean`` in step with the package's flags: read at every step, it
        must not cost a loop over every package."""
        if self.tracked[path].never_clean:
            self.never_clean.add(path)
        else:
            self.never_clean.discard(path)

    def flush_marks(self) -> None:
        """Write the packages marked since the last flush ``dirty`` (``mark_dirty``)."""
        if not self.newly_dirty:
            return
        paths = sorted(self.newly_dirty)
        written = self.index.write(lambda txn: self.mark_dirty(txn, paths))
        self.newly_dirty.clear()
        self._published(written)

    def owner(self, path: str, roots: Collection[str]) -> str | None:
        """The innermost package whose directory contains ``path`` (not ``path`` itself)."""
        directory = os.path.dirname(path)
        while True:
            if directory in self.tracked:
                return directory
            if directory in roots:
                return None
            parent = os.path.dirname(directory)
            if parent == directory:
                return None
            directory = parent

    def mark_dirty(self, txn: lmdb.Transaction, paths: Iterable[str]) -> list[sc.PackageRecord]:
        """Write these packages ``dirty`` (those not already); the records written."""
        packages_db = self.index.dbs[sc.DB_PACKAGES]
        written = []
        now = time.time_ns()
        for path in paths:
            tracked = self.tracked.get(path)
            if tracked is None:
                continue
            old = sc.get_package(txn, packages_db, path)
            if old is not None and old.state == "dirty":
                continue
            pkg = tracked.pkg
            record = sc.PackageRecord(
                path=path,
                name=old.name if old else pkg.name,
                root=pkg.root,
                state="dirty",
                tree=old.tree if old else None,
                meta=old.meta if old else None,
                files=old.files if old else 0,
                generation=self.index.next_generation(txn),
                updated_ns=now,
                error=LINKED_OUT if tracked.linked_out else None,
                workspace=pkg.workspace,
            )
            self.index.put_package(txn, record, None)
            written.append(record)
        if written:
            self.index.touch(txn)
        return written

    def trim_known(self) -> None:
        """Keep the records of the packages rehashed last within ``_KNOWN_RECORDS`` (the
        very last whatever its size: a big package gains the most)."""
        held = sum(len(records) for _tree, records, _parts in self.known.values())
        for path, (_tree, records, _parts) in list(self.known.items())[:-1]:  # oldest first
            if held <= _KNOWN_RECORDS:
                return
            held -= len(records)
            del self.known[path]
