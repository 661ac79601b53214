"""The engine's account of hard links: every name of a file with several, and the
packages holding a name that no event reports (``Tracked.linked_out``).

The table itself is ``freshd.crawl.links.LinkTable``; this part keeps it current from the
scans, looks names up in the index, and marks the packages concerned.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterable

import lmdb

from freshd.crawl.links import Inode, LinkTable
from freshd.engine.packages import Packages
from freshd.index.writer import Index
from freshd.metrics import Metrics
from freshd_client.spec import schema as sc

log = logging.getLogger("freshd.engine")


class HardLinks:
    """Hard links across the packages followed (engine thread only). ``flush`` writes
    the dirty marks made so far."""

    def __init__(
        self,
        index: Index,
        packages: Packages,
        metrics: Metrics,
        scrub_seconds: float,
        flush: Callable[[], None],
    ) -> None:
        self.index = index
        self.table = LinkTable()
        self._pk = packages
        self._metrics = metrics
        self._scrub_seconds = scrub_seconds
        self._flush = flush
        self._searched: set[tuple[Inode, int]] = set()  # short inodes looked up in the index

    def check(self, scanned: set[str]) -> None:
        """Account for every name of the hard-linked files (``links``); a package holding
        a name that no event reports is never reported clean."""
        short = self.table.short()
        unsearched = {i for i, n in short.items() if (i, n) not in self._searched}
        if unsearched:  # names in packages scanned before the link was made
            self._searched.update((i, short[i]) for i in unsearched)
            # None when every package was just scanned (the start-up crawl): the search
            # is a pass over every stored file record.
            if not self._pk.tracked.keys() <= scanned:
                for package, rel, inode in self._stored_names(unsearched):
                    if package not in scanned:  # its stored records are older than the scan
                        self.table.add_name(package, rel, inode)
                short = self.table.short()
        outside = self.table.holders(short)
        linked_out = []
        # Only a package linked out now or before can change (the linked out ones are
        # among the never clean): not a loop over every package at each rescan.
        for path in sorted(outside | self._pk.never_clean):
            tracked = self._pk.tracked.get(path)
            if tracked is None:
                continue
            if path in outside and not tracked.linked_out:
                linked_out.append(path)
                log.debug("%s holds a hard-linked file with a name outside every file set", path)
                self._pk.newly_dirty.add(path)  # at once, without a rehash (a crawl wrote it)
                if path not in scanned:
                    self._pk.touch(path)  # its link counts may be older than this news
            elif tracked.linked_out and path not in outside and path not in scanned:
                self._pk.touch(path)  # kept dirty until now: rehash it to write it clean
            tracked.linked_out = path in outside
            self._pk.note_never_clean(path)
        self._metrics.linked_out.set(sum(p in self._pk.tracked for p in outside))
        if linked_out:
            # One line, not one per package: a uv or pnpm cache linked into packages
            # (cp -al) makes thousands of them (issue 21).
            log.warning(
                "%d package(s) hold hard-linked files with another name outside every "
                "watched file set (%s%s), which no event reports: they stay unknown (never "
                "fresh), not rehashed in a loop; the stat sweep finds changes made through "
                "the other names within %.0f s (names at debug level)",
                len(linked_out),
                linked_out[0],
                ", …" if len(linked_out) > 1 else "",
                self._scrub_seconds,
            )
            self._flush()

    def touch_new_names(self, paths: Iterable[str]) -> None:
        """New names of files that have others (``ln``, ``cp -al``): the packages holding
        the others are rescanned, so that they learn of the name (it may be in no file
        set: link() notifies only the directory it is made in)."""
        inodes = set()
        for path in paths:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
                inodes.add((st.st_dev, st.st_ino))
        if not inodes:
            return
        holders = self.table.holders(inodes)
        holders.update(p for p, _rel, _inode in self._stored_names(inodes))
        for path in holders:
            if path in self._pk.tracked:
                self._pk.touch(path)

    def _stored_names(self, inodes: set[Inode]) -> list[tuple[str, str, Inode]]:
        prefixes = {sc.files_prefix(p): p for p in self._pk.tracked}

        def find(txn: lmdb.Transaction) -> list[tuple[str, str, Inode]]:
            found = []
            for key, value in txn.cursor(db=self.index.dbs[sc.DB_FILES]):
                record = sc.decode_file(value)
                package = prefixes.get(bytes(key[: sc.PREFIX_SIZE]))
                if (record.dev, record.ino) in inodes and package is not None:
                    found.append((package, record.rel, (record.dev, record.ino)))
            return found

        return self.index.read(find)
