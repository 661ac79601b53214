"""The LMDB index schema, version 1 (specified in docs/index-schema.md).

Pure encodings plus opening an environment and checking its schema version.
The service writes with these; readers (the thin client, other languages)
decode with them.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import lmdb
from blake3 import blake3

from freshd_client.errors import IndexMissingError, IndexStoreError, SchemaMismatchError
from freshd_client.spec import digest as dg
from freshd_client.spec.identity import RACY_WINDOW_NS as RACY_WINDOW_NS
from freshd_client.spec.identity import stat_identity as stat_identity
from freshd_client.spec.records import COOKIE_PREFIX as COOKIE_PREFIX
from freshd_client.spec.records import FileRecord as FileRecord
from freshd_client.transport import trust
from freshd_client.transport.locations import API_VERSION as API_VERSION

SCHEMA_VERSION = 2  # 2: digests of format 2 (issue 19); an index of 1 holds format-1 ones
MAX_DBS = 8
DB_META = b"meta"
DB_ROOTS = b"roots"
DB_PACKAGES = b"packages"
DB_NAMES = b"names"
DB_FILES = b"files"
DB_COOKIES = b"cookies"
DB_SEALS = b"seals"  # the daemon's own (freshd.index.seals); readers need not open it
DB_NAMES_ALL = (DB_META, DB_ROOTS, DB_PACKAGES, DB_NAMES, DB_FILES, DB_COOKIES, DB_SEALS)

META_SCHEMA = b"schema_version"
META_GENERATION = b"generation"
META_LAST_WRITE = b"last_write_ns"
META_DAEMON = b"daemon"

HEARTBEAT_NS = 1_000_000_000
"""How often a running daemon rewrites its ``daemon`` record."""
LIVENESS_NS = 5_000_000_000
"""A ``daemon`` record older than this belongs to a daemon that is gone (or hung)."""

State = Literal["unknown", "dirty", "clean", "error"]
STATES: tuple[State, ...] = ("unknown", "dirty", "clean", "error")
STATE_CODES: dict[State, int] = {s: i for i, s in enumerate(STATES)}

MAX_PLAIN_KEY = 480  # LMDB's default key limit is 511 bytes
PREFIX_SIZE = 16
U64 = struct.Struct("<Q")
Raw = bytes | memoryview
"""What an LMDB get or cursor hands back."""
PACKAGE_HEAD = struct.Struct("<BBBxIQQ32s32s")
DAEMON_HEAD = struct.Struct("<BBxxIqq")
FILE_VALUE = struct.Struct("<QqqQQq32sc")
_HAS_TREE = 1
_HAS_META = 2


def path_key(path: str) -> bytes:
    """Key of an absolute path in ``packages`` and ``roots``: its bytes, or a hash if long."""
    raw = os.fsencode(path)
    return raw if len(raw) <= MAX_PLAIN_KEY else b"\xff" + blake3(raw).digest()


def name_key(name: str) -> bytes:
    """Key of a project name in ``names``: its UTF-8, or a hash if empty or long (LMDB
    refuses both; a lookup of such a name then finds nothing instead of failing)."""
    raw = name.encode("utf-8", "surrogatepass")
    return raw if 0 < len(raw) <= MAX_PLAIN_KEY else b"\xff" + blake3(raw).digest()


def files_prefix(package_path: str) -> bytes:
    """The 16-byte prefix shared by all ``files`` keys of one package."""
    return blake3(os.fsencode(package_path)).digest()[:PREFIX_SIZE]


def file_key(prefix: bytes, rel: str) -> bytes:
    """Key of one file record: package prefix + relative path (hashed, after NUL, if long)."""
    return _file_key(prefix, os.fsencode(rel))


def _file_key(prefix: bytes, raw: bytes) -> bytes:
    if len(raw) + PREFIX_SIZE <= MAX_PLAIN_KEY:
        return prefix + raw
    return prefix + b"\x00" + blake3(raw).digest()


def encode_file(v: FileRecord) -> bytes:
    """Encode a ``files`` value: fixed 81-byte head, then the relative path bytes."""
    return _encode_file(v, os.fsencode(v.rel))


def _encode_file(v: FileRecord, raw: bytes) -> bytes:
    return (
        _pack_file(v.size, v.mtime_ns, v.ctime_ns, v.ino, v.dev, v.hashed_at_ns, v.digest, v.kind)
        + raw
    )


def decode_file(raw: Raw) -> FileRecord:
    """Decode a ``files`` value."""
    size, mtime, ctime, ino, dev, hashed_at, digest, kind = _unpack_file(raw)
    rel = str(raw[FILE_VALUE.size :], _FS_ENCODING, _FS_ERRORS)  # os.fsdecode, for memoryviews too
    return _new_record(FileRecord, (rel, size, mtime, ctime, ino, dev, kind, digest, hashed_at))


_pack_file = FILE_VALUE.pack
_unpack_file = FILE_VALUE.unpack_from
_new_record = tuple.__new__
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def encode_files(package_path: str, records: Iterable[FileRecord]) -> list[tuple[bytes, bytes]]:
    """The ``files`` key/value pairs of one package's records."""
    prefix = files_prefix(package_path)
    pairs = []
    for r in records:
        raw = os.fsencode(r.rel)  # once for the key and the value
        pairs.append((_file_key(prefix, raw), _encode_file(r, raw)))
    return pairs


def get_package(txn: lmdb.Transaction, db: lmdb._Database, path: str) -> PackageRecord | None:
    """The ``packages`` record of ``path`` in a transaction, if any."""
    raw = txn.get(path_key(path), db=db)
    return decode_package(raw) if raw is not None else None


def get_files(txn: lmdb.Transaction, db: lmdb._Database, path: str) -> dict[str, FileRecord]:
    """All ``files`` records of the package at ``path``, by relative path."""
    prefix = files_prefix(path)
    out: dict[str, FileRecord] = {}
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix):
        for key, value in cursor:
            if key[:PREFIX_SIZE] != prefix:
                break
            record = decode_file(value)
            out[record.rel] = record
    return out


DaemonStatus = Literal["starting", "indexing", "ready", "stopped"]
DAEMON_STATUSES: tuple[DaemonStatus, ...] = ("starting", "indexing", "ready", "stopped")


@dataclass(frozen=True, slots=True)
class DaemonRecord:
    """The ``daemon`` meta value: who keeps this index current, and whether it still does."""

    api_version: int
    status: DaemonStatus
    pid: int
    heartbeat_ns: int
    started_ns: int
    socket: str | None = None
    version: str | None = None


def encode_daemon(r: DaemonRecord) -> bytes:
    """Encode the ``daemon`` meta value: fixed 24-byte head, then a UTF-8 JSON object."""
    head = DAEMON_HEAD.pack(
        r.api_version, DAEMON_STATUSES.index(r.status), r.pid, r.heartbeat_ns, r.started_ns
    )
    return head + json.dumps({"socket": r.socket, "version": r.version}).encode()


@dataclass(frozen=True, slots=True)
class PackageRecord:
    """Decoded ``packages`` value."""

    path: str
    name: str | None
    root: str
    state: State
    tree: str | None
    meta: str | None
    files: int
    generation: int
    updated_ns: int
    error: str | None = None
    workspace: str | None = None

    def info(self) -> dict[str, Any]:
        """The contract's PackageInfo."""
        return {
            "name": self.name,
            "path": self.path,
            "state": self.state,
            "tree": self.tree,
            "meta": self.meta,
            "files": self.files,
            "generation": self.generation,
            "error": self.error,
        }


def encode_package(r: PackageRecord) -> bytes:
    """Encode a ``packages`` value: fixed 92-byte head, then a UTF-8 JSON object."""
    flags = (_HAS_TREE if r.tree else 0) | (_HAS_META if r.meta else 0)
    head = PACKAGE_HEAD.pack(
        SCHEMA_VERSION,
        STATE_CODES[r.state],
        flags,
        r.files,
        r.generation,
        r.updated_ns,
        dg.parse(r.tree)[1] if r.tree else dg.NO_DIGEST,
        dg.parse(r.meta)[1] if r.meta else dg.NO_DIGEST,
    )
    tail = {"path": r.path, "name": r.name, "root": r.root, "error": r.error}
    if r.workspace:
        tail["workspace"] = r.workspace
    return head + json.dumps(tail, separators=(",", ":")).encode()


def decode_package(raw: Raw) -> PackageRecord:
    """Decode a ``packages`` value."""
    version, state, flags, files, generation, updated, tree, meta = PACKAGE_HEAD.unpack_from(raw)
    if version != SCHEMA_VERSION:
        raise SchemaMismatchError(f"package record of schema version {version}")
    tail = json.loads(bytes(raw[PACKAGE_HEAD.size :]))
    return PackageRecord(
        path=tail["path"],
        name=tail.get("name"),
        root=tail.get("root", ""),
        state=STATES[state],
        tree=dg.format_raw("tree", tree) if flags & _HAS_TREE else None,
        meta=dg.format_raw("meta", meta) if flags & _HAS_META else None,
        files=files,
        generation=generation,
        updated_ns=updated,
        error=tail.get("error"),
        workspace=tail.get("workspace"),
    )


UNSYNCED_NAME = "unsynced"
"""A file in the index directory, present while a writer commits without flushing each
commit to the disk: it holds the boot id (Linux ``/proc/sys/kernel/random/boot_id``) of
the boot those commits were made in. Other processes see every commit at once through
the page cache, and a killed writer loses nothing; only a machine that stops before
the kernel has written the pages back can leave a torn file. So when the file names
another boot (or the boot is unknown), the index is not to be read: readers refuse it
and the next writer rebuilds it from the disk (docs/index-schema.md)."""

_BOOT: list[str | None] = []


def boot_id() -> str | None:
    """This boot's id, None where the system does not tell (then every commit is synced)."""
    if not _BOOT:
        try:
            with open("/proc/sys/kernel/random/boot_id", "rb") as fh:
                _BOOT.append(fh.read(64).decode("ascii").strip() or None)
        except (OSError, UnicodeDecodeError):
            _BOOT.append(None)
    return _BOOT[0]


def torn(path: str) -> bool:
    """Whether the index at ``path`` holds unsynced commits of another boot (or of a boot
    that cannot be told apart from this one): possibly torn by a machine crash."""
    try:
        with open(os.path.join(path, UNSYNCED_NAME), "rb") as fh:
            written_in = fh.read(64).decode("ascii", "replace").strip()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # unreadable: it cannot vouch for the index
    return written_in != boot_id() or written_in == ""


def open_env(
    path: str, *, readonly: bool, map_size: int = 1 << 28, sync: bool = True
) -> lmdb.Environment:
    """Open the index environment at directory ``path`` and check its schema version.

    A writer creates a missing index; a reader gets IndexMissingError, or
    IndexStoreError for an index torn by a machine crash (``torn``). ``sync=False``
    (a writer that keeps the ``UNSYNCED_NAME`` file) leaves flushing to the kernel.
    An index directory of another user, or one others can write to, is refused
    (UntrustedIndexError, ``trust.index_dir``). A writer creates its files 0600.
    """
    trust.index_dir(path)
    if readonly and not os.path.exists(os.path.join(path, "data.mdb")):
        raise IndexMissingError(f"no freshd index at {path}")
    if readonly and torn(path):
        raise IndexStoreError(
            f"the index at {path} was being written when the machine stopped and may be "
            "damaged; `freshd serve` rebuilds it when it starts"
        )
    try:
        env = lmdb.open(
            path,
            subdir=True,
            max_dbs=MAX_DBS,
            map_size=map_size,
            readonly=readonly,
            create=not readonly,
            mode=0o700,  # data.mdb and lock.mdb 0600 (LMDB drops the x bits); the default is 0755
            metasync=False,  # with sync: integrity kept, an OS crash may undo a commit
            sync=sync,  # without: see UNSYNCED_NAME
        )
    except lmdb.Error as exc:
        raise IndexStoreError(f"cannot open index at {path}: {exc}") from exc
    try:
        check_schema(env, path, create=not readonly)
    except BaseException:
        env.close()
        raise
    return env


def check_schema(env: lmdb.Environment, path: str, *, create: bool) -> None:
    """Raise SchemaMismatchError unless the index speaks SCHEMA_VERSION (writers stamp new ones)."""
    try:
        meta = env.open_db(DB_META, create=create)
    except lmdb.NotFoundError:
        raise IndexMissingError(f"no freshd index at {path} (empty environment)") from None
    with env.begin(db=meta, write=create) as txn:
        found = txn.get(META_SCHEMA)
        if found is None and create:
            txn.put(META_SCHEMA, str(SCHEMA_VERSION).encode())
            return
    if found is None:
        raise IndexMissingError(f"no freshd index at {path} (no schema version)")
    if found != str(SCHEMA_VERSION).encode():
        raise SchemaMismatchError(
            f"index at {path} has schema version {found.decode(errors='replace')}; "
            f"this freshd reads version {SCHEMA_VERSION} (remove the index to rebuild it)"
        )
