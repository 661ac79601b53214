"""Scan one package: walk its file set, hash what changed, compute both digests.

Used by ``freshd digest`` (one-shot, no previous records) and by the indexer
(previous records from the index enable the stat fast path).
"""

from __future__ import annotations

import errno
import os
import stat
import time

from blake3 import blake3

from freshd_client.content import cachekeys as ck
from freshd_client.content import gitstate
from freshd_client.content.fileset import defines_rules, walk
from freshd_client.content.project import MARKERS, CacheKey, Project, is_package_dir, read_project
from freshd_client.errors import FreshdError, PackagePathError, UnreadableError
from freshd_client.spec import digest as dg
from freshd_client.spec.identity import stat_identity
from freshd_client.spec.records import FileRecord
from freshd_client.transport.locations import real_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from freshd_client.content.fileset import Known

_HASH_ATTEMPTS = 4
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC


class ScanResult:
    """Digests and per-file records of one package.

    A plain class (not a dataclass: ``freshd check`` should not load dataclasses and
    inspect); it crosses process boundaries from the indexer's workers by pickle.
    """

    __slots__ = (
        "encoded",
        "error",
        "gitignores",
        "hashed",
        "hashed_bytes",
        "links",
        "meta",
        "meta_entries",
        "meta_local",
        "name",
        "notes",
        "path",
        "records",
        "reused",
        "same_files",
        "skipped",
        "tree",
        "walked",
    )

    def __init__(self, path: str) -> None:
        self.path = path
        self.name: str | None = None
        self.tree: str | None = None
        self.meta: str | None = None
        self.records: list[FileRecord] = []
        self.meta_entries: list[dg.Entry] = []
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.error: str | None = None
        self.hashed = 0
        self.reused = 0
        self.hashed_bytes = 0
        self.same_files = False  # every stored record was reused and none was added
        self.meta_local = False
        """The meta digest reads what a watcher of the package cannot see: environment
        variables (the computing process's own), files a glob selects anywhere (also
        where the daemon's event filter looks away), paths out of the package, keys read
        through a symlink. A daemon must not answer for it (``cachekeys.local_only``)."""
        self.links: list[tuple[str, int, int, int]] = []
        """Files of the set with more than one name: (rel, st_dev, st_ino, st_nlink)."""
        self.gitignores: list[str] = []  # the .gitignore files whose rules the walk read
        self.walked: tuple[list[str], list[str]] | None = None
        """What the walk saw besides the file set (``Walk.nested``, ``Walk.hidden``);
        None when it did not run or did not finish."""
        self.encoded: dict[str, bytes] | None = None
        """``rescan_files`` only: the tree digest's encoded entries by relative path, in
        the encoding's order, for the next ``rescan_files`` of the package."""

    def rule_files(self) -> list[str]:
        """The files whose content decides the file set, members of it or not:
        ``pyproject.toml`` and the ``.gitignore`` files the walk read."""
        return ["pyproject.toml", *self.gitignores]


def inputs_of(
    keys: tuple[CacheKey, ...] | None,
    scopes: tuple[dg.Scope, ...] = dg.SCOPES,
    rule_files: Iterable[str] = ("pyproject.toml",),
) -> list[str] | None:
    """What a package's digests of ``scopes`` are computed from besides the members of
    its file set and the directories its walk lists: paths relative to the package, each
    read through a symlink if it is one. The one list that the seals of the crawl and
    the stat caches of ``freshd check`` and ``freshd run`` rest on.

    - tree: the files that make the rules (``rule_files``: ``ScanResult.rule_files``
      after a scan: ``pyproject.toml`` and the ``.gitignore`` files the walk read);
    - meta: ``pyproject.toml`` (it names the cache keys), the other project files (the
      package's name), and every path a cache key (``keys``, uv's defaults when None)
      reads (``cachekeys.meta_paths``).

    None when the meta digest reads more than a fixed list of paths in the package (git
    state, an environment variable, a glob, a path out of it): then nothing may rest on
    a list. A cache must also refuse an input that is a symlink (``identity.is_link``):
    the link's identity says nothing of its target's edits.
    """
    found: dict[str, None] = {}
    if "tree" in scopes:
        found.update(dict.fromkeys(rule_files))
    if "meta" in scopes:
        key_paths = ck.meta_paths(keys)
        if key_paths is None:
            return None
        found.update(dict.fromkeys((*MARKERS, *key_paths)))
    return list(found)


def package_dir(path: str) -> str:
    """Canonical absolute path of the package at ``path``; PackagePathError if it is not one."""
    real = real_path(path)
    try:
        names = set(os.listdir(real))
    except FileNotFoundError:
        raise PackagePathError(f"{path}: no such directory") from None
    except NotADirectoryError:
        raise PackagePathError(f"{path}: not a directory") from None
    except OSError as exc:
        raise PackagePathError(f"{path}: {exc.strerror or exc}") from None
    if not is_package_dir(names):
        raise PackagePathError(f"{path}: not a package (no pyproject.toml, setup.py or setup.cfg)")
    return real


def hash_path(path: str, st: os.stat_result | None) -> tuple[os.stat_result, bytes] | None:
    """Hash the file or symlink at ``path``, last seen with ``st`` (None: listed as a
    regular file, not stat'ed).

    Returns the stat the digest is valid for, or None if the path is gone or is
    no longer a file or symlink. A regular file is read through one descriptor and
    the stat is its fstat, the same before and after the read: a file modified while
    it is read is hashed again (so is one renamed over, where the old inode's ctime
    moves as it loses its name, as on Linux), and the stat always names the inode
    that was read, so no later lstat of a path holding other content matches it.
    UnreadableError if it will not hold still or cannot be read.
    """
    for _ in range(_HASH_ATTEMPTS):
        try:
            if st is None or stat.S_ISREG(st.st_mode):
                hashed = _hash_file(path, st)
                if hashed is not None:
                    return hashed
                st = None  # modified while read: again, from a new open
                continue
            if not stat.S_ISLNK(st.st_mode):
                return None
            raw = dg.link_digest(os.readlink(os.fsencode(path)))
            after = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None  # gone, or a directory above it is no longer one
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.EINVAL, errno.EAGAIN):
                raise UnreadableError(path, exc.strerror or str(exc)) from exc
            # It was swapped for another kind of object since it was listed (a symlink
            # makes the O_NOFOLLOW open fail with ELOOP, a file makes readlink fail).
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None
            continue
        if _unchanged(st, after):
            return st, raw
        st = after
    raise UnreadableError(path, "it kept changing while being hashed")


def _hash_file(path: str, st: os.stat_result | None) -> tuple[os.stat_result, bytes] | None:
    """Hash the regular file at ``path`` (the file ``st`` saw, when given); None when it
    changed while it was read. OSError(EAGAIN) when it is not that regular file."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        opened = os.fstat(fd)
        # Swapped since it was listed (a FIFO, /dev/zero): never read what was opened.
        if not stat.S_ISREG(opened.st_mode) or (
            st is not None and (opened.st_ino, opened.st_dev) != (st.st_ino, st.st_dev)
        ):
            raise OSError(errno.EAGAIN, "replaced since it was listed")
        raw = dg.hash_open_file(fd, opened.st_size)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    return (opened, raw) if _unchanged(opened, after) else None


def _unchanged(a: os.stat_result, b: os.stat_result) -> bool:
    return stat_identity(a) == stat_identity(b) and a.st_mode == b.st_mode


def scan(
    path: str,
    previous: Mapping[str, FileRecord] | None = None,
    *,
    scopes: tuple[dg.Scope, ...] = dg.SCOPES,
    previous_tree: str | None = None,
    dirs: list[tuple[str, os.stat_result]] | None = None,
    project: Project | None = None,
    members: Mapping[str, bytes] | None = None,
) -> ScanResult:
    """Scan the package at canonical ``path``; errors land in ``ScanResult.error``.

    ``previous`` holds the stored records (enabling the stat fast path) and
    ``previous_tree`` the tree digest they gave: it is reused when every stored
    record was reused and no file was added. ``dirs`` receives every directory the
    walk listed, with its lstat taken before the listing. ``project``: the package's
    project files as already read (``project.load_project``), else they are read here.
    ``members`` (without ``previous``): the file set of an earlier scan with the raw
    digest of each file (a stamp's manifest): where the files that define the rules
    still hold the same content, a member is kept without matching the rules again
    (a copy of the package then walks without compiling the rules).
    """
    result = ScanResult(path=path)
    try:
        if project is None:
            project = read_project(path)
        result.name = project.name
        result.meta_local = ck.local_only(path, project.cache_keys)
        result.notes.extend(f"cache key not covered: {k}" for k in project.ignored_cache_keys)
        started = time.time_ns()
        records: dict[str, FileRecord] = {}
        if "tree" in scopes:
            known = previous or (_stamped(path, members) if members else {})
            _scan_tree(path, project, previous or {}, started, result, dirs, known)
            records = {r.rel: r for r in result.records}
            # Reused records come from ``previous`` one per path: equal counts, equal sets.
            result.same_files = bool(previous) and result.hashed == 0
            result.same_files &= result.reused == len(previous or {})
        if "tree" in scopes and previous_tree and result.same_files:
            result.tree = previous_tree
        elif "tree" in scopes:
            result.tree = dg.package_digest(
                (dg.Entry(os.fsencode(r.rel), r.kind, r.digest) for r in result.records), "tree"
            )
        if "meta" in scopes:
            result.meta_entries = _meta_entries(path, project, records, started)
            result.meta = dg.package_digest(result.meta_entries, "meta")
    except FreshdError as exc:
        result.error = str(exc)
        result.tree = result.meta = None
        result.same_files = False
    return result


def rescan_files(
    path: str,
    previous: Mapping[str, FileRecord],
    changed: Iterable[str],
    encoded: Mapping[str, bytes] | None = None,
) -> ScanResult | None:
    """Update a package's digests for a few changed files only (the daemon's path).

    ``previous`` must be the complete file set of the last scan and ``changed`` the
    relative paths of every event since: unchanged files are trusted without a
    ``stat``, which only a watcher can justify. None when the change needs a full
    scan: a path that is new to the file set (the rules must decide), a file that
    defines the rules (``pyproject.toml``, a ``.gitignore``), or a path that is now
    something other than a file or symlink.

    ``encoded``: ``result.encoded`` of the rescan that gave ``previous``. With it only
    the changed entries are encoded again (a 200-file package costs ~0.4 ms to encode
    whole); the file set never gains a path here, so the order it keeps stays right.
    """
    result = ScanResult(path=path)
    records = dict(previous)
    parts = dict(encoded) if encoded is not None else None
    now = time.time_ns()
    try:
        project = read_project(path)
        result.name = project.name
        result.meta_local = ck.local_only(path, project.cache_keys)
        for rel in sorted(set(changed)):
            if defines_rules(rel):
                return None  # the rules changed: other files may enter or leave the set
            abs_path = os.path.join(path, rel)
            try:
                st = os.lstat(abs_path)
            except (FileNotFoundError, NotADirectoryError):
                record = None  # gone: part of no file set
            except OSError as exc:
                raise UnreadableError(abs_path, exc.strerror or str(exc)) from exc
            else:
                file_or_link = stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)
                if rel not in previous or not file_or_link:
                    return None
                record = _hash_record(abs_path, rel, st, now)
            if record is None:
                records.pop(rel, None)
                if parts is not None:
                    parts.pop(rel, None)
                continue
            records[rel] = record
            if parts is not None:
                parts[rel] = dg.entry_bytes(dg.Entry(os.fsencode(rel), record.kind, record.digest))
            _note_link(result, rel, st)
            result.hashed += 1
            result.hashed_bytes += record.size
        if parts is None:
            ordered = sorted(records.values(), key=lambda r: os.fsencode(r.rel))
            parts = {
                r.rel: dg.entry_bytes(dg.Entry(os.fsencode(r.rel), r.kind, r.digest))
                for r in ordered
            }
        result.records = list(records.values())
        result.reused = len(result.records) - result.hashed
        result.tree = dg.encoded_digest(parts.values(), "tree")
        result.encoded = parts
        result.meta = dg.package_digest(_meta_entries(path, project, records, now), "meta")
    except FreshdError as exc:
        result.error = str(exc)
        result.tree = result.meta = None
    return result


def _scan_tree(
    path: str,
    project: Project,
    previous: Mapping[str, FileRecord],
    started: int,
    result: ScanResult,
    dirs: list[tuple[str, os.stat_result]] | None,
    known: Mapping[str, Known],
) -> None:
    walked = walk(path, project, known, dirs, lstat_new=False)
    result.walked = walked.nested, walked.hidden
    result.gitignores = walked.gitignores
    if walked.errors:
        raise walked.errors[0]
    result.skipped = walked.skipped
    records = result.records
    hashed = hashed_bytes = 0
    base = os.path.join(path, "")  # "path/": the join of each file is a concatenation
    for rel, st in walked.files:
        if st is not None:
            old = previous.get(rel)
            if old is not None and old.reusable_for(st):
                records.append(old)
                if st.st_nlink > 1:  # (the test first: this loop runs once a file)
                    _note_link(result, rel, st)
                continue
        done = hash_path(base + rel, st)
        if done is None:
            continue  # gone, or no longer a file or symlink
        st, raw = done
        records.append(_record(rel, st, raw, started))
        hashed += 1
        hashed_bytes += st.st_size
        if st.st_nlink > 1:
            _note_link(result, rel, st)
    result.hashed = hashed
    result.hashed_bytes = hashed_bytes
    result.reused = len(records) - hashed


class _Member:
    """A member of an earlier file set (``scan``'s ``members``): the walk asks it whether
    a file that defines the rules is unchanged, which here means by content."""

    __slots__ = ("digest", "path")

    def __init__(self, path: str, digest: bytes) -> None:
        self.path = path
        self.digest = digest

    def reusable_for(self, st: os.stat_result) -> bool:
        if not self.digest or not stat.S_ISREG(st.st_mode):
            return False  # a symlink's target would be read, not its digest's string
        hashed = hash_path(self.path, st)
        return hashed is not None and hashed[1] == self.digest


def _stamped(path: str, members: Mapping[str, bytes]) -> dict[str, _Member]:
    other = _Member("", b"")  # not a rule file: only its membership is asked
    return {
        rel: _Member(os.path.join(path, rel), digest) if defines_rules(rel) else other
        for rel, digest in members.items()
    }


def _note_link(result: ScanResult, rel: str, st: os.stat_result) -> None:
    if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
        result.links.append((rel, st.st_dev, st.st_ino, st.st_nlink))


def _hash_record(abs_path: str, rel: str, st: os.stat_result, now: int) -> FileRecord | None:
    hashed = hash_path(abs_path, st)
    return _record(rel, *hashed, now) if hashed is not None else None


def _record(rel: str, st: os.stat_result, digest: bytes, now: int) -> FileRecord:
    """The record of a file hashed at ``now`` (taken before it was read)."""
    fields = (
        rel,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_ino,
        st.st_dev,
        dg.kind_of(st.st_mode),
        digest,
        now,
    )
    return _new_record(FileRecord, fields)  # tuple.__new__: FileRecord's own parses keywords


_new_record = tuple.__new__


def _meta_entries(
    path: str, project: Project, records: Mapping[str, FileRecord], now: int
) -> list[dg.Entry]:
    """Entries of the meta digest: uv's cache keys by content (uv's defaults when unset),
    selected as uv selects them (``cachekeys``)."""
    keys = project.cache_keys
    if keys is None:
        keys = tuple(CacheKey(file=f) for f in ck.DEFAULT_FILES)
        keys += tuple(CacheKey(dir=d) for d in ck.DEFAULT_DIRS)
    entries: dict[bytes, dg.Entry] = {}
    globs = [k.file for k in keys if k.file is not None and ck.is_glob(k.file)]
    targets = [
        t
        for k in keys
        if k.file is not None and not ck.is_glob(k.file)
        if (t := ck.file_target(path, k.file)) is not None
    ]
    if globs:
        targets += ck.glob_targets(path, globs)
    for name, target in targets:
        key = os.fsencode(name)
        if key not in entries:
            entry = _key_file_entry(key, name, target, records, now)
            if entry is not None:
                entries[key] = entry
    for k in keys:
        if k.dir is not None:
            name, target = ck.dir_target(path, k.dir)
            try:
                is_dir = stat.S_ISDIR(os.stat(target).st_mode)
            except OSError:
                continue  # absent (or unreadable: uv counts neither)
            key = os.fsencode(name)
            entries.setdefault(
                key, dg.Entry(key, dg.KIND_DIR, dg.NO_DIGEST if is_dir else _NOT_DIR)
            )
        elif k.env is not None:
            value = os.environ.get(k.env)
            key = ENV_PREFIX + os.fsencode(k.env)
            raw = dg.NO_DIGEST if value is None else blake3(os.fsencode(value)).digest()
            entries[key] = dg.Entry(key, dg.KIND_ENV, raw)
    commit = any(k.git_commit for k in keys)
    tags = any(k.git_tags for k in keys)
    for entry in gitstate.entries(path, commit=commit, tags=tags):
        entries[entry.path] = entry
    return list(entries.values())


ENV_PREFIX = b"//env:"
_NOT_DIR = blake3(b"not a directory").digest()


def _key_file_entry(
    key: bytes, name: str, target: str, records: Mapping[str, FileRecord], now: int
) -> dg.Entry | None:
    """The entry of a file a cache key selects: its content, symlinks followed (uv reads
    the file a link leads to); None when it is not a regular file."""
    record = records.get(name)
    if record is not None and record.kind != dg.KIND_LINK:
        return dg.Entry(key, record.kind, record.digest)
    try:
        real = os.path.realpath(target)
        st = os.lstat(real)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    hashed = hash_path(real, st)
    if hashed is None:
        return None
    return dg.Entry(key, dg.kind_of(hashed[0].st_mode), hashed[1])
