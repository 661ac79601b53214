"""The stat cache of ``freshd check``: packages verified fresh, and what that rested on.

After a from-scratch check finds a package fresh, the lstat of everything its digest
was computed from is kept in ``VENV/.freshd/verified.json``: each file of the file set,
each directory listed and the rule files the set excludes (tree scope), or each
cache-key path and ``pyproject.toml`` (meta scope). A later check trusts that verdict
only while every one of them has the same stat identity (size, mtime, ctime, inode,
device, type and execute bit), without hashing and without loading the scanner: the
same stat fast path as the index, with git's racy rule on both timestamps (nothing
whose mtime or ctime is within ``RACY_WINDOW_NS`` of the verification is cached). A
directory's mtime moves when an entry is added, removed or renamed in it, so a new file
anywhere the walk looked misses the cache.

Not cached: a package whose meta digest reads git state or expands globs (their
inputs are not a fixed list of paths). A venv that cannot be written to keeps no
cache; the check is then as slow as without it, never less exact.
"""

from __future__ import annotations

import json
import os
import stat

from freshd_client.quick import RECORD_KIND_BITS, identity, lstat_identity
from freshd_client.records import RACY_WINDOW_NS as RACY_WINDOW_NS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from freshd_client.project import Project
    from freshd_client.scan import ScanResult

VERIFIED_FILE = "verified.json"
FORMAT = 1


def _path(venv: str) -> str:
    from freshd_client.stamps import STAMP_DIR

    return os.path.join(venv, STAMP_DIR, VERIFIED_FILE)


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
    try:
        for rel, expected in entry["paths"]:
            if lstat_identity(os.path.join(source, rel)) != expected:
                return False
    except (TypeError, ValueError, OSError):
        return False  # a malformed entry, or a path that cannot be examined
    return True


Snapshot = tuple[int, list[tuple[str, "list[int] | None"]]]


def meta_snapshot(source: str, memo: object = None) -> tuple[Snapshot | None, Project]:
    """Before a meta scan: the time and the lstat of every path the meta digest reads
    (``pyproject.toml`` first: it names the others), and the project read after that
    lstat (``memo``: see ``project.load_project``). The snapshot is None when those are
    not a fixed list of paths (``cachekeys.meta_paths``) or one is a symlink;
    ProjectFileError when unreadable."""
    import time

    from freshd_client.cachekeys import meta_paths
    from freshd_client.project import load_project

    started = time.time_ns()
    pyproject = lstat_identity(os.path.join(source, "pyproject.toml"))
    project = load_project(source, memo)[0]
    keys = meta_paths(project.cache_keys)
    if keys is None:
        return None, project
    paths = [("pyproject.toml", pyproject)]
    for rel in dict.fromkeys(keys):
        if rel != "pyproject.toml":
            ident = lstat_identity(os.path.join(source, rel))
            if ident is not None and stat.S_ISLNK(ident[-1]):
                return None, project  # read through the link: its target is not checked
            paths.append((rel, ident))
    return (started, paths), project


def entry_for(
    result: ScanResult,
    digest: str,
    install: str,
    dirs: list[tuple[str, os.stat_result]] | None = None,
    snapshot: Snapshot | None = None,
) -> dict[str, Any] | None:
    """The cache entry of a package just verified fresh: from a tree scan's records and
    the ``dirs`` its walk listed, or from the ``snapshot`` taken before a meta scan.
    None when it must not be cached: something was modified too recently to trust its
    timestamps, or the inputs are not a fixed list of paths."""
    paths: list[tuple[str, list[int] | None]]
    if dirs is not None:
        started = min((r.hashed_at_ns for r in result.records), default=0)
        paths = [(rel, identity(st)) for rel, st in dirs]
        for r in result.records:
            bits = RECORD_KIND_BITS[r.kind]
            paths.append((r.rel, [r.size, r.mtime_ns, r.ctime_ns, r.ino, r.dev, bits]))
        # The files that make the rules, where the set excludes them (a .gitignore that
        # ignores itself): rewritten in place, they change the set and nothing else.
        members = {r.rel for r in result.records}
        try:
            for rel in result.rule_files():
                if rel not in members:
                    paths.append((rel, lstat_identity(os.path.join(result.path, rel))))
        except OSError:
            return None
    elif snapshot is not None:
        started, paths = snapshot
    else:
        return None
    if not started:
        return None
    # A project or rule file that is a link: its identity says nothing of its target's
    # edits, which change the file set or the meta digest (issue 17). Never cached.
    rules = {"pyproject.toml", "setup.cfg", "setup.py", *result.rule_files()}
    if any(
        rel in rules and ident is not None and stat.S_IFMT(ident[5]) == stat.S_IFLNK
        for rel, ident in paths
    ):
        return None
    # mtime and ctime both: tar and cp -a set an old mtime on a file written just now
    newest = max((max(i[1], i[2]) for _rel, i in paths if i is not None), default=0)
    if newest >= started - RACY_WINDOW_NS:
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
    path = _path(venv)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"format": FORMAT, "packages": cache}, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        import contextlib

        with contextlib.suppress(OSError):
            os.unlink(tmp)
