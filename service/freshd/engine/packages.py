"""The packages the engine follows, and what a directory must be to stay one."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from freshd.discovery import Package
from freshd_client.project import is_package_dir

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
        rescan can clear. Not for a hard link out alone (``Engine._check_links``)."""
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
