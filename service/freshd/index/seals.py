"""Seals: the start-up crawl's proof that a package is exactly as it was indexed.

A full scan that finds nothing modified lately (git's racy rule, on both timestamps)
leaves a seal beside the package record: the stat identity of everything its digests
were computed from. That is every directory its walk listed, every file of the file
set, the files that make the rules (``pyproject.toml`` and each ``.gitignore``, even
when excluded), and the paths the meta digest reads (cache keys). At the next start
the crawl ``lstat``\\ s those paths and compares; where every identity is unchanged the
package is as it was. A name added, removed or renamed anywhere the walk looked moves
its directory's mtime, a write moves a file's, a new hard link its ctime. The crawl
then neither lists the tree nor matches rules nor reads the file records: it costs
one ``lstat`` a path instead of ~6 µs of Python a file.

A seal vouches only for the digests written beside it: it is used when the package
record is ``clean`` with those digests, and only by the start-up crawl (a rescan after
an event always walks). A package whose meta digest reads more than a fixed list of
paths in the package (git state, an environment variable, a glob, a path out of it,
a cache key that is a symlink) gets none. What it rests on beyond the file set and the
listed directories is ``scan.inputs_of``, the same list as the stat caches of ``freshd
check``; the identities and the racy rule are ``freshd_client.spec.identity``'s, packed.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import sys
from typing import Any

import lmdb

from freshd_client.content.project import Project
from freshd_client.content.scan import ScanResult, inputs_of
from freshd_client.spec import schema as sc
from freshd_client.spec.identity import RECORD_KIND_BITS, identity, is_link, racy, racy_limit

FORMAT = 1
_HEAD = struct.Struct("<HxxIII")  # format, header length, paths, names length
_IDENT = struct.Struct("<QqqQQI")  # size, mtime, ctime, inode, device, type | user x bit
_ABSENT = _IDENT.pack(0, 0, 0, 0, 0, 0)
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


class Seal:
    """A decoded seal: what the package's outcome repeats, and the identities to check."""

    __slots__ = ("files", "hidden", "idents", "links", "meta", "name", "names", "nested", "tree")

    def __init__(self, header: dict[str, Any], names: list[bytes], idents: bytes) -> None:
        self.tree: str = header["tree"]
        self.meta: str = header["meta"]
        self.name: str | None = header["name"]
        self.files: int = header["files"]
        self.links = [tuple(link) for link in header["links"]]
        self.nested: list[str] = header["nested"]
        self.hidden: list[str] = header["hidden"]
        self.names = names
        self.idents = idents

    def directories(self) -> list[tuple[str, int, int]]:
        """(relative path, device, inode) of each directory the sealed walk listed."""
        found = []
        for n, name in enumerate(self.names):
            _size, _mtime, _ctime, ino, dev, kind = _IDENT.unpack_from(self.idents, n * _IDENT.size)
            if kind == stat.S_IFDIR:
                found.append((os.fsdecode(name), dev, ino))
        return found

    def holds(self, path: str) -> bool:
        """Whether every path of the seal has the identity it had (``path``: the package)."""
        base = os.fsencode(path) + b"/"
        lstat, packed = os.lstat, _packed
        current = []
        for name in self.names:  # the loop of a warm start: once a path
            try:
                current.append(packed(lstat(base + name)))
            except (FileNotFoundError, NotADirectoryError):
                current.append(_ABSENT)
            except OSError:
                return False  # cannot be examined: the walk will say why
        return b"".join(current) == self.idents


def _packed(st: os.stat_result) -> bytes:
    """``identity.identity`` of ``st``, as a seal stores it."""
    return _IDENT.pack(*identity(st))


def take(
    result: ScanResult,
    project: Project,
    dirs: list[tuple[str, os.stat_result]],
    started: int,
) -> bytes:
    """The seal of a complete scan (``result``, of ``project``, whose walk listed ``dirs``),
    all of it read after the wall-clock ns ``started``; b"" when it cannot have one:
    something changed within the racy window of ``started`` (its identity may not show
    a change made in the same clock tick), or the meta digest reads git state."""
    inputs = inputs_of(project.cache_keys, rule_files=result.rule_files())
    if result.error is not None or result.tree is None or result.meta is None:
        return b""
    if inputs is None:
        return b""  # the meta digest reads more than a fixed list of paths in the package
    pack, kinds = _IDENT.pack, RECORD_KIND_BITS
    idents: dict[bytes, bytes] = {}
    newest = 0
    for rel, st in dirs:
        mtime, ctime = st.st_mtime_ns, st.st_ctime_ns
        newest = max(newest, mtime, ctime)
        idents[rel.encode(_FS_ENCODING, _FS_ERRORS)] = pack(
            0, mtime, ctime, st.st_ino, st.st_dev, stat.S_IFDIR
        )
    # Once a file (cold starts take a seal of every package): a record's fields unpacked.
    for rel, size, mtime, ctime, ino, dev, kind, _digest, _at in result.records:
        if mtime > newest or ctime > newest:
            newest = max(mtime, ctime)
        idents[rel.encode(_FS_ENCODING, _FS_ERRORS)] = pack(
            size, mtime, ctime, ino, dev, kinds[kind]
        )
    limit = racy_limit(started)  # identity.racy's rule, on the fields as they are packed
    if newest >= limit:
        return b""
    # What the rules and the meta digest read beyond the file set, each through a link
    # if it is one. A name absent from a listed directory needs nothing more: adding it
    # moves the directory's mtime.
    listed = {rel for rel, _st in dirs}
    base = os.path.join(result.path, "")
    for rel in inputs:
        raw = os.fsencode(rel)
        if raw in idents:  # a member: sealed above, unless a link (its target is read)
            if is_link(list(_IDENT.unpack(idents[raw]))):
                return b""
            continue
        try:
            st = os.lstat(base + rel)
        except (FileNotFoundError, NotADirectoryError):
            if os.path.dirname(rel) not in listed:
                idents[raw] = _ABSENT  # below a directory the walk did not list
            continue
        except OSError:
            return b""
        ident = identity(st)
        if racy([ident], started) or is_link(ident):
            return b""
        idents[raw] = pack(*ident)
    nested, hidden = result.walked or ([], [])
    header = json.dumps(
        {
            "tree": result.tree,
            "meta": result.meta,
            "name": result.name,
            "files": len(result.records),
            "links": result.links,
            "nested": nested,
            "hidden": hidden,
        },
        separators=(",", ":"),
    ).encode()
    names = b"\0".join(idents)
    return b"".join(
        (_HEAD.pack(FORMAT, len(header), len(idents), len(names)), header, names, *idents.values())
    )


def load(txn: lmdb.Transaction, db: Any, record: sc.PackageRecord | None) -> Seal | None:
    """The seal stored for the package of ``record``, when it vouches for that record
    (``clean``, with the digests the seal was taken with)."""
    if record is None or record.state != "clean" or db is None:
        return None
    raw = txn.get(sc.path_key(record.path), db=db)
    seal = decode(raw) if raw is not None else None
    if seal is None or (seal.tree, seal.meta, seal.name) != (record.tree, record.meta, record.name):
        return None
    return seal


def decode(raw: bytes | memoryview) -> Seal | None:
    """The seal ``take`` encoded as ``raw``; None when it is not one this version wrote."""
    if len(raw) < _HEAD.size:
        return None
    fmt, header_len, count, names_len = _HEAD.unpack_from(raw)
    start = _HEAD.size + header_len
    if fmt != FORMAT or len(raw) != start + names_len + count * _IDENT.size:
        return None
    try:
        header = json.loads(bytes(raw[_HEAD.size : start]))
        names = bytes(raw[start : start + names_len]).split(b"\0") if count else []
        seal = Seal(header, names, bytes(raw[start + names_len :]))
    except (ValueError, KeyError, TypeError):
        return None  # not a seal this version wrote: the package is walked
    return seal if len(names) == count else None
