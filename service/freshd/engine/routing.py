"""Routing an event to what it may change: the package that owns its path (dropped when
outside that package's file set), the other names of a hard-linked file, the
directories to rediscover, a sync cookie, a root gone."""

from __future__ import annotations

import os

from watchdog.events import (
    DirAttribEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
)

from freshd.engine.events import content_only, noise
from freshd.engine.links import HardLinks
from freshd.engine.packages import Packages
from freshd.engine.roots import RootState, Watching
from freshd.engine.structure import Structure
from freshd.engine.sync import Cookies
from freshd_client.content.fileset import VENV_MARKER
from freshd_client.content.project import MARKERS
from freshd_client.spec.schema import COOKIE_PREFIX


class Router:
    """Routes the events handed over by the engine's loop (engine thread only)."""

    def __init__(
        self,
        roots: dict[str, RootState],
        packages: Packages,
        links: HardLinks,
        sync: Cookies,
        watching: Watching,
        structure: Structure,
    ) -> None:
        self.roots = roots
        self._pk = packages
        self._links = links
        self._sync = sync
        self._watching = watching
        self._structure = structure
        self.new_names: set[str] = set()  # files created since the last step

    def route(self, event: FileSystemEvent) -> None:
        """Mark what ``event`` may have changed: its package dirty (with the file it
        names, when only that file's record can change), a directory to rediscover, a
        cookie seen, a root gone."""
        moved = isinstance(event, (FileMovedEvent, DirMovedEvent))
        paths = [event.src_path, event.dest_path] if moved else [event.src_path]
        for i, raw in enumerate(paths):
            path = os.fsdecode(raw)
            if not path:
                continue
            gone = isinstance(event, (FileDeletedEvent, DirDeletedEvent)) or (moved and i == 0)
            name = os.path.basename(path)
            if name.startswith(COOKIE_PREFIX):
                if not gone and os.path.dirname(path) in self.roots:
                    self._sync.see(path)
                continue
            root = self._watching.root_of(path)
            if root is None:
                continue
            if path == root:
                if gone:
                    self._structure.root_gone(root)
                continue
            if not gone and isinstance(event, (FileCreatedEvent, FileMovedEvent)):
                self.new_names.add(path)  # maybe a hard link to a file of any package
                self._pk.note_event()
            if "/.git" in path and self._git_keyed:
                self._touch_git(path)
            if event.is_directory and (gone or moved):
                self._watching.kernel = None  # its inode may come back as a directory not watched
            owner = self._pk.owner(path, self.roots)
            tracked = self._pk.tracked.get(owner) if owner else None
            if (tracked is None or not tracked.sensitive) and noise(
                path, owner, root, event.is_directory
            ):
                continue
            if event.is_directory:
                if not isinstance(event, DirAttribEvent):  # a mode: the owner's rescan tells
                    self._structure.dirs.add(path)
            elif name in MARKERS or name == VENV_MARKER:
                self._structure.dirs.add(os.path.dirname(path))
            if owner is None:
                if self._structure.dirs:
                    self._pk.note_event()
                continue
            rel = path[len(owner) + 1 :]
            self._pk.touch(owner, rel if content_only(event.is_directory, name, tracked) else None)
            for other, other_rel in self._links.table.others(owner, rel):
                # The same file under another name, judged by that name: a linked
                # .gitignore or project file written through any name changes its
                # package's file set or project, not just one file (churn seed 5014).
                other_name = os.path.basename(other_rel)
                if other_name in MARKERS:
                    self._structure.dirs.add(os.path.dirname(os.path.join(other, other_rel)))
                content = content_only(False, other_name, self._pk.tracked.get(other))
                self._pk.touch(other, other_rel if content else None)

    @property
    def _git_keyed(self) -> bool:
        return any(t.git_dir for t in self._pk.tracked.values())

    def _touch_git(self, path: str) -> None:
        for pkg_path, tracked in self._pk.tracked.items():
            if tracked.git_dir and path.startswith(tracked.git_dir):
                self._pk.touch(pkg_path)
