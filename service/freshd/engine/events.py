"""What an event means for a package: whether it can change anything the index holds
(``noise``), and whether it changes one file's record or the package's file set."""

from __future__ import annotations

import os
from collections.abc import Iterable

from freshd.engine.packages import Tracked
from freshd_client.content.fileset import VENV_MARKER, outside_file_set, pruned_name
from freshd_client.content.project import MARKERS, CacheKey


def content_only(is_directory: bool, name: str, tracked: Tracked | None) -> bool:
    """Whether an event on a file named ``name`` changes only that file's record (a
    targeted rehash suffices), not the package's file set or project."""
    return not (
        is_directory
        or name in MARKERS
        or name in (VENV_MARKER, ".gitignore")
        or (tracked is not None and tracked.sensitive)
    )


def keys_in_noise(keys: Iterable[CacheKey] | None) -> bool:
    """Whether a cache key names a file or directory whose events ``noise`` would drop
    (``build/version.txt``): its package's meta digest depends on it."""
    for key in keys or ():
        rel, is_dir = (key.file, False) if key.file is not None else (key.dir, True)
        if rel is not None and outside_file_set(os.path.normpath(rel), is_dir):
            return True
    return False


def noise(path: str, owner: str | None, root: str, is_dir: bool) -> bool:
    """Events that cannot change anything the index holds: in a package (``owner``),
    outside its file set by the walk's own rule (``outside_file_set``; ``[tool.freshd]
    include`` turns this off); outside every package, below a directory that discovery
    never enters (no package can appear there)."""
    if owner is not None:
        return outside_file_set(path[len(owner) + 1 :], is_dir)
    parts = path[len(root) + 1 :].split("/")
    return any(pruned_name(part) for part in (parts if is_dir else parts[:-1]))


def read_through_links(path: str, keys: Iterable[CacheKey] | None) -> bool:
    """Whether the package at ``path`` reads a project file or a cache-key file through a
    symlink: the target may live outside every watched tree, and no event tells of its
    changes (its package is rehashed before each sync answer and never reported clean)."""
    names = [*MARKERS, *(k.file for k in keys or () if k.file is not None)]
    return any(os.path.islink(os.path.join(path, name)) for name in names)
