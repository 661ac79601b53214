"""Packages appearing, disappearing and changing: the engine's view of which
directories are packages, kept in line with the disk (``dirs``: the directories whose
packages may have changed, gathered from events and handled before each scan)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import lmdb

from freshd.config import Config
from freshd.engine.events import keys_in_noise, read_through_links
from freshd.engine.links import HardLinks
from freshd.engine.packages import Packages, Tracked, is_package, is_real_dir, workspace_settings
from freshd.engine.roots import RootState, root_of, under_any
from freshd.engine.source import EventSource
from freshd.index.writer import Index
from freshd.metrics import Metrics
from freshd_client.content.discovery import Package, discover, never_entered, workspace_members
from freshd_client.content.gitstate import find_git_dir
from freshd_client.content.project import project_or_none

log = logging.getLogger("freshd.engine")

Emit = Callable[[str, dict[str, Any]], None]


class Structure:
    """Tracks and forgets packages as directories change (engine thread only).
    ``flush`` writes the dirty marks made so far; ``emit`` publishes a change."""

    def __init__(
        self,
        cfg: Config,
        index: Index,
        roots: dict[str, RootState],
        packages: Packages,
        links: HardLinks,
        source: EventSource,
        metrics: Metrics,
        *,
        flush: Callable[[], None],
        emit: Emit,
    ) -> None:
        self.cfg = cfg
        self.index = index
        self.roots = roots
        self._pk = packages
        self._links = links
        self._source = source
        self._metrics = metrics
        self._flush = flush
        self._emit = emit
        self.dirs: set[str] = set()  # directories whose packages may have changed

    def restructure(self) -> None:
        dirs = sorted(self.dirs)
        self.dirs.clear()
        done: set[str] = set()
        changed_roots: set[str] = set()
        for directory in dirs:
            if under_any(directory, done):
                continue
            # Only discovery walks below a directory; a package that stays one is just
            # re-read, so a package appearing inside it must be handled on its own.
            if directory not in self._pk.tracked or not is_package(directory):
                done.add(directory)
            root = root_of(self.roots, directory)
            if root is not None and self.restructure_dir(directory, root):
                changed_roots.add(root)
        for root in changed_roots:
            self.refresh_workspaces(root)

    def restructure_dir(self, directory: str, root: str) -> bool:
        """Bring the packages at and below ``directory`` in line with the disk."""
        changed = False
        prefix = directory + "/"
        gone = [
            p
            for p in self._pk.tracked
            if (p == directory or p.startswith(prefix)) and not is_package(p)
        ]
        if gone:
            self.forget(gone)
            changed = True
            for path in gone:  # the package around a gone one takes in its files
                owner = self._pk.owner(path, self.roots)
                if owner is not None:
                    self._pk.touch(owner)
        tracked = self._pk.tracked.get(directory)
        if tracked is not None:
            # Its project files changed: name, include/exclude, workspace settings.
            before = tracked.pkg.project
            self.track(replace(tracked.pkg, project=project_or_none(directory)))
            changed |= workspace_settings(before) != workspace_settings(
                self._pk.tracked[directory].pkg.project
            )
        elif is_real_dir(directory) and not never_entered(directory, root):
            for pkg in discover(directory, within=root).packages:
                if pkg.path not in self._pk.tracked:
                    self.track(pkg)
                    self._pk.touch(pkg.path)
                    changed = True
        owner = self._pk.owner(directory, self.roots)
        if changed and owner is not None:
            self._pk.touch(owner)  # a nested package came or went: its file set changed
        return changed

    def track(self, pkg: Package) -> None:
        project = pkg.project
        keys = project.cache_keys if project else None
        uses_git = bool(keys) and any(k.git_commit or k.git_tags for k in keys or ())
        git_dir = find_git_dir(pkg.path) if uses_git else None
        old = self._pk.tracked.get(pkg.path)
        root = self.roots.get(pkg.root)
        self._pk.tracked[pkg.path] = Tracked(
            pkg=pkg,
            seq=old.seq if old else 0,
            sensitive=bool(project and project.include) or uses_git or keys_in_noise(keys),
            git_dir=git_dir,
            linked_out=old.linked_out if old else False,
            # Git state outside every root, or a root not fully watched, cannot be followed.
            polled=(git_dir is not None and root_of(self.roots, git_dir) is None)
            or (root is not None and root.mode in ("polling", "blind")),
            indirect=read_through_links(pkg.path, keys),
            unwatched=old.unwatched if old else None,
        )
        self._pk.note_never_clean(pkg.path)
        if old is None:
            self._metrics.packages.inc()

    def forget(self, paths: list[str]) -> None:
        def write(txn: lmdb.Transaction) -> None:
            for path in paths:
                self.index.delete_package(txn, path)
            self.index.touch(txn)

        self.index.write(write)
        for path in paths:
            self._pk.tracked.pop(path, None)
            self._pk.never_clean.discard(path)
            self._pk.known.pop(path, None)
            self._links.table.forget(path)
            self._pk.dirty.pop(path, None)
            self._pk.newly_dirty.discard(path)
            self._metrics.packages.dec()
            self._emit("removed", {"path": path})
        self._links.check(set())  # a forgotten name may leave a linked file unaccounted

    def refresh_workspaces(self, root: str) -> None:
        in_root = {p: t for p, t in self._pk.tracked.items() if t.pkg.root == root}
        members = workspace_members({p: t.pkg.project for p, t in in_root.items()})
        for path, tracked in in_root.items():
            workspace = members.get(path)
            if workspace != tracked.pkg.workspace:
                tracked.pkg = replace(tracked.pkg, workspace=workspace)
                self._pk.touch(path)

    # -- roots ----------------------------------------------------------------------

    def rescan_root(self, root: str) -> None:
        """Re-discover ``root`` and mark every package in it dirty for a full rescan."""
        if not os.path.isdir(root):
            self.root_gone(root)
            return
        found = discover(root)
        for problem in found.problems:
            log.warning("%s", problem)
        present = {p.path for p in found.packages}
        gone = [p for p, t in self._pk.tracked.items() if t.pkg.root == root and p not in present]
        if gone:
            self.forget(gone)
        for pkg in found.packages:
            self.track(pkg)
            self._pk.touch(pkg.path)
        self._flush()

    def root_gone(self, root: str) -> None:
        state = self.roots[root]
        if state.mode == "missing":
            return
        self._source.unwatch(root)
        state.mode, state.reason = "missing", "the directory was deleted or moved away"
        state.next_poll = time.monotonic() + self.cfg.rescan_seconds
        log.warning("root %s disappeared; waiting for it to come back", root)
        self.forget([p for p, t in self._pk.tracked.items() if t.pkg.root == root])
