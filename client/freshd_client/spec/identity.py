"""Stat identity: the one test of "this path is as it was" behind every stat cache.

The index's file records, the seals of the start-up crawl, the stat caches of ``freshd
check`` (``verified.json``, ``verdict.txt``) and of ``freshd run -- uv`` (``uvkeys.json``,
``uvkeys.txt``) all reuse an earlier answer while the paths it rests on keep the
identity they had, and none of them trusts an identity taken too close to the moment it
was read (git's racy-timestamp rule). This module is that rule and that identity, once;
the files that store identities keep their own containers (JSON beside other data, plain
text for the fast path, packed in LMDB), each documented where it is written.

It loads nothing but ``os`` and ``stat``: ``freshd check`` and ``freshd run`` read it on
every container start.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    Identity = list[int]
    """Size, mtime_ns, ctime_ns, inode, device, and the type bits with the owner's
    execute bit of a regular file (``identity``)."""

RACY_WINDOW_NS = 2_000_000_000
"""An identity is trusted only if the path's mtime and ctime are this much older than
the moment its content was read.

File timestamps come from a coarse clock (a kernel tick; a whole second on some file
systems), so a write landing in the same tick as the read can leave size and timestamps
unchanged: git's racy-timestamp problem. Both timestamps count: ``tar`` and ``cp -a``
set an old mtime on a file written just now.
"""

RECORD_KIND_BITS = {b"f": stat.S_IFREG, b"x": stat.S_IFREG | stat.S_IXUSR, b"l": stat.S_IFLNK}
"""The type bits of ``identity`` for a file record's kind (file, executable, symlink)."""


def stat_identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """What a file record compares (``records.FileRecord.same_stat``, with the kind
    beside it): size, mtime, ctime, inode, device."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def identity(st: os.stat_result) -> list[int]:
    """Size, mtime, ctime, inode, device, and the type with the execute bit of a
    regular file (what a digest sees of a mode); a directory's size does not count."""
    mode = st.st_mode
    kind = stat.S_IFMT(mode) | (mode & stat.S_IXUSR if stat.S_ISREG(mode) else 0)
    size = st.st_size if not stat.S_ISDIR(mode) else 0
    return [size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, kind]


def lstat_identity(path: str | bytes) -> list[int] | None:
    """The identity of ``path`` (None when it does not exist); OSError otherwise."""
    try:
        return identity(os.lstat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


def is_link(found: os.stat_result | list[int] | None) -> bool:
    """Whether a stat or an identity is a symlink's. The one test of "read through a
    link": a link's own identity says nothing of the edits of what it leads to, so no
    cache vouches for a rule file, a project file or a cache key that is one."""
    if found is None:
        return False
    return stat.S_ISLNK(found[5] if isinstance(found, list) else found.st_mode)


def racy_limit(started_ns: int) -> int:
    """The first timestamp too new to trust for a read that began at ``started_ns``."""
    return started_ns - RACY_WINDOW_NS


def racy(idents: Iterable[list[int] | None], started_ns: int) -> bool:
    """Whether one of ``idents`` was modified (mtime or ctime) within ``RACY_WINDOW_NS``
    before ``started_ns``, when the reading began: then it may not show a change made in
    the same clock tick, and nothing resting on it may be cached."""
    limit = racy_limit(started_ns)
    return any(i is not None and (i[1] >= limit or i[2] >= limit) for i in idents)


def holds(paths: Iterable[tuple[str, object]], base: str = "") -> bool:
    """Whether every path (joined to ``base``) has the identity recorded beside it
    (None: absent). False for a malformed list or a path that cannot be examined: a
    cache that cannot be checked vouches for nothing."""
    try:
        for path, expected in paths:
            if lstat_identity(os.path.join(base, path) if base else path) != expected:
                return False
    except (TypeError, ValueError, OSError):
        return False
    return True


# -- the plain-text form (verdict.txt, uvkeys.txt) ---------------------------------------


def path_line(path: str | bytes, ident: list[int] | None) -> str:
    """A ``P`` line: the path's bytes in hex, then its identity, or ``-`` when absent."""
    shown = "-" if ident is None else " ".join(str(v) for v in ident)
    return f"P {os.fsencode(path).hex()} {shown}"


def path_line_holds(fields: list[str]) -> bool:
    """Whether the fields after a ``P`` tag name a path that still has that identity.
    ValueError when they are malformed; OSError when the path cannot be examined."""
    if len(fields) == 2 and fields[1] == "-":
        expected = None
    elif len(fields) == 7:
        expected = [int(v) for v in fields[1:]]
    else:
        raise ValueError(f"not a P line: {fields!r}")
    return lstat_identity(bytes.fromhex(fields[0])) == expected
