"""The stat cache of ``freshd check``: packages verified fresh, and what that rested on.

After a from-scratch check finds a package fresh, the lstat of everything its digest
was computed from is kept in ``VENV/.freshd/verified.json``: each file of the file set,
each directory listed and the rule files the set excludes (tree scope), or the project
files and each cache-key path (meta scope): ``scan.inputs_of``. A later check trusts that verdict
only while every one of them has the same stat identity (size, mtime, ctime, inode,
device, type and execute bit), without hashing and without loading the scanner: the
same stat fast path as the index, with git's racy rule on both timestamps (nothing
whose mtime or ctime is within ``identity.RACY_WINDOW_NS`` of the verification is
cached). A
directory's mtime moves when an entry is added, removed or renamed in it, so a new file
anywhere the walk looked misses the cache.

Not cached: a package whose meta digest reads git state or expands globs (their
inputs are not a fixed list of paths). A venv that cannot be written to keeps no
cache; the check is then as slow as without it, never less exact.
"""

from __future__ import annotations

import json
import os

from freshd_client.content.smallfile import write_atomic
from freshd_client.spec.identity import (
    RECORD_KIND_BITS,
    holds,
    identity,
    is_link,
    lstat_identity,
    racy,
)
from freshd_client.venvs.venv import freshd_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from freshd_client.content.project import Project
    from freshd_client.content.scan import ScanResult

VERIFIED_FILE = "verified.json"
FORMAT = 1


def _path(venv: str) -> str:
    return freshd_file(venv, VERIFIED_FILE)


def load(venv: str) -> dict[str, Any]:
    """The cache's entries by package name ({} when there is none or it is unreadable)."""
    try:
        with open(_path(venv), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {}
    packages = data.get("packages")
    return packages if isinstance(packages, dict) else {}


def still_fresh(entry: object, source: str, digest: str, install: str) -> bool:
    """Whether ``entry`` vouches for ``digest`` of the install ``install`` at ``source``:
    every path it rests on has the same stat identity as when it was verified."""
    if not (
        isinstance(entry, dict)
        and entry.get("digest") == digest
        and entry.get("install") == install
        and entry.get("source") == source
        and isinstance(entry.get("paths"), list)
    ):
        return False
    return holds(entry["paths"], source)


Snapshot = tuple[int, list[tuple[str, "list[int] | None"]]]


def meta_snapshot(source: str, memo: object = None) -> tuple[Snapshot | None, Project]:
    """Before a meta scan: the time and the lstat of every path the meta digest reads
    (``scan.inputs_of``; ``pyproject.toml`` first: it names the others), and the project
    read after that lstat (``memo``: see ``project.load_project``). The snapshot is None
    when those are not a fixed list of paths or one is a symlink; ProjectFileError when
    unreadable."""
    import time

    from freshd_client.content.project import load_project
    from freshd_client.content.scan import inputs_of

    started = time.time_ns()
    pyproject = lstat_identity(os.path.join(source, "pyproject.toml"))
    project = load_project(source, memo)[0]
    inputs = inputs_of(project.cache_keys, ("meta",))
    if inputs is None:
        return None, project
    paths = [("pyproject.toml", pyproject)]
    paths += [(rel, lstat_identity(os.path.join(source, rel))) for rel in inputs[1:]]
    if any(is_link(ident) for _rel, ident in paths):
        return None, project  # read through the link: its target is not checked
    return (started, paths), project


def entry_for(
    result: ScanResult,
    digest: str,
    install: str,
    dirs: list[tuple[str, os.stat_result]] | None = None,
    snapshot: Snapshot | None = None,
) -> dict[str, Any] | None:
    """The cache entry of a package just verified fresh: from a tree scan's records, the
    ``dirs`` its walk listed and its rule files (``scan.inputs_of``), or from the
    ``snapshot`` taken before a meta scan. None when it must not be cached: something
    was modified too recently to trust its timestamps (``identity.racy``), an input is
    read through a symlink, or the inputs are not a fixed list of paths."""
    from freshd_client.content.scan import inputs_of

    paths: list[tuple[str, list[int] | None]]
    if dirs is not None:
        started = min((r.hashed_at_ns for r in result.records), default=0)
        paths = [(rel, identity(st)) for rel, st in dirs]
        for r in result.records:
            bits = RECORD_KIND_BITS[r.kind]
            paths.append((r.rel, [r.size, r.mtime_ns, r.ctime_ns, r.ino, r.dev, bits]))
        members = {rel: n for n, (rel, _i) in enumerate(paths)}
        try:
            for rel in inputs_of(None, ("tree",), result.rule_files()) or ():
                n = members.get(rel)
                if n is None:  # excluded (a .gitignore that ignores itself), or absent
                    ident = lstat_identity(os.path.join(result.path, rel))
                    paths.append((rel, ident))
                else:
                    ident = paths[n][1]
                if is_link(ident):
                    return None  # its target's edits would change the set unseen
        except OSError:
            return None
    elif snapshot is not None:
        started, paths = snapshot
    else:
        return None
    if not started or racy((ident for _rel, ident in paths), started):
        return None  # changed too close to the verification: its stat may not show a change
    return {
        "source": result.path,
        "digest": digest,
        "install": install,
        "paths": [[rel, ident] for rel, ident in paths],
    }


def save(venv: str, entries: dict[str, dict[str, Any] | None]) -> None:
    """Merge ``entries`` (None removes one) into the cache, atomically; a venv that
    cannot be written to keeps no cache, silently."""
    cache = load(venv)
    for name, entry in entries.items():
        if entry is None:
            cache.pop(name, None)
        else:
            cache[name] = entry
    raw = json.dumps({"format": FORMAT, "packages": cache}, separators=(",", ":"))
    try:
        write_atomic(_path(venv), raw.encode("utf-8"))
    except OSError:
        return  # the cache is kept another time
