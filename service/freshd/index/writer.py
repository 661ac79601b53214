"""The LMDB index, writer side: one writer per index (a lock file), map growth on demand.

Readers in other processes open the same environment read-only
(``freshd_client.spec.schema.open_env``); LMDB gives them consistent snapshots. Every
transaction of this process passes the environment's ``MapGate``, so that the map
grows only while none is active (LMDB's rule). The writer clears the reader slots of
dead processes (``reclaim_readers``) when it opens the index and then about once a
second, before a write: a reader killed inside a read transaction leaves its slot
behind, and until it is cleared LMDB cannot reuse any page freed after that
transaction began, so the file grows with every write.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
import time
from collections.abc import Callable
from typing import Any, TypeVar

import lmdb

from freshd.errors import IndexLockedError
from freshd_client.content.smallfile import write_atomic
from freshd_client.errors import IndexStoreError, UntrustedIndexError
from freshd_client.spec import schema as sc
from freshd_client.spec.mapgate import MapGate, store_error
from freshd_client.transport import locations, trust

T = TypeVar("T")
log = logging.getLogger("freshd")
LOCK_NAME = "freshd.lock"
PREFIX = sc.PREFIX_SIZE
_MAX_GROWTHS = 16
READER_CHECK_S = 1.0
"""How often the writer looks for reader slots of dead processes (``reclaim_readers``:
well under a microsecond when there is none; a file-lock test per reading process)."""


class Index:
    """The writable index at a directory. Use as a context manager."""

    def __init__(self, path: str, *, map_size: int = 1 << 28, owner: dict[str, Any] | None = None):
        self.path = path
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise IndexStoreError(f"cannot create index directory {path}: {exc.strerror}") from exc
        _keep_private(path)
        self._lock_fd = _take_lock(os.path.join(path, LOCK_NAME), owner or {})
        try:
            self._unsynced = _begin_unsynced(path)
            self.env = sc.open_env(path, readonly=False, map_size=map_size, sync=not self._unsynced)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.dbs = {name: self.env.open_db(name) for name in sc.DB_NAMES_ALL}
        self.gate = MapGate(self.env, path)
        self.stale_readers_cleared = 0
        """Reader slots of dead processes cleared since the index was opened."""
        self._next_reader_check = 0.0
        self.reclaim_readers()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush, close the environment and release the writer lock."""
        if self._lock_fd >= 0:
            synced = not self._unsynced
            if self._unsynced:
                try:
                    self.env.sync(True)
                    synced = True
                except lmdb.Error as exc:  # the marker stays: a crash before writeback rebuilds
                    log.warning("cannot flush the index at %s: %s", self.path, exc)
            self.env.close()
            if synced and self._unsynced:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.path, sc.UNSYNCED_NAME))
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- transactions ---------------------------------------------------------

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in a write transaction, growing the map and retrying when it is full."""
        if time.monotonic() >= self._next_reader_check:
            self.reclaim_readers()
        for _ in range(_MAX_GROWTHS):
            resizes = self.gate.resizes
            try:
                txn = self.gate.begin(write=True)
                try:
                    result = fn(txn)
                except BaseException:
                    self.gate.end(txn)
                    raise
                self.gate.end(txn, commit=True)
                return result
            except lmdb.MapFullError:
                self.gate.resize(self.env.info()["map_size"] * 2, resizes)
            except lmdb.Error as exc:
                raise store_error(exc, f"cannot write index at {self.path}") from exc
        raise IndexStoreError(f"index at {self.path} cannot grow any further")

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in a read transaction."""
        return self.gate.read(fn)

    def reclaim_readers(self) -> int:
        """Clear the reader slots of dead processes (LMDB's ``mdb_reader_check``); how
        many there were. Best effort: a failure is logged, and the next write tries again."""
        self._next_reader_check = time.monotonic() + READER_CHECK_S
        try:
            cleared: int = self.env.reader_check()
        except lmdb.Error as exc:
            log.warning("cannot check the reader slots of the index at %s: %s", self.path, exc)
            return 0
        if cleared:
            self.stale_readers_cleared += cleared
            log.warning(
                "cleared %d reader slot(s) left in the index at %s by dead processes",
                cleared,
                self.path,
            )
        return cleared

    # -- queries ---------------------------------------------------------------

    def package(self, path: str) -> sc.PackageRecord | None:
        """The record of the package at canonical ``path``, if indexed."""
        return self.read(lambda txn: sc.get_package(txn, self.dbs[sc.DB_PACKAGES], path))

    def packages(self) -> list[sc.PackageRecord]:
        """Every indexed package, by path."""

        def collect(txn: lmdb.Transaction) -> list[sc.PackageRecord]:
            cursor = txn.cursor(db=self.dbs[sc.DB_PACKAGES])
            return [sc.decode_package(v) for _k, v in cursor]

        return sorted(self.read(collect), key=lambda r: r.path)

    def file_records(self, package_path: str) -> dict[str, sc.FileRecord]:
        """The stored per-file records of one package, by relative path."""
        return self.read(lambda txn: sc.get_files(txn, self.dbs[sc.DB_FILES], package_path))

    # -- writes (inside a write transaction) ------------------------------------

    def next_generation(self, txn: lmdb.Transaction) -> int:
        """Bump and return the index-wide generation counter."""
        meta = self.dbs[sc.DB_META]
        raw = txn.get(sc.META_GENERATION, db=meta)
        generation = (sc.U64.unpack(raw)[0] if raw else 0) + 1
        txn.put(sc.META_GENERATION, sc.U64.pack(generation), db=meta)
        return generation

    def put_package(
        self,
        txn: lmdb.Transaction,
        record: sc.PackageRecord,
        files: list[tuple[bytes, bytes]] | None,
    ) -> None:
        """Store a package record; when ``files`` is given (``schema.encode_files``), replace
        its file records with them."""
        key = sc.path_key(record.path)
        old_raw = txn.get(key, db=self.dbs[sc.DB_PACKAGES])
        old = sc.decode_package(old_raw) if old_raw is not None else None
        txn.put(key, sc.encode_package(record), db=self.dbs[sc.DB_PACKAGES])
        if old is None or old.name != record.name:
            if old is not None:
                self._unname(txn, old.name, old.path)
            self._name(txn, record.name, record.path)
        if files is not None:
            self._replace_files(txn, record.path, files)

    def update_files(self, txn: lmdb.Transaction, pairs: list[tuple[bytes, bytes]]) -> None:
        """Put file records; an empty value deletes its key."""
        db = self.dbs[sc.DB_FILES]
        for key, value in pairs:
            if value:
                txn.put(key, value, db=db)
            else:
                txn.delete(key, db=db)

    def put_seal(self, txn: lmdb.Transaction, path: str, seal: bytes) -> None:
        """Store the seal of a package (``freshd.index.seals``); b"" removes it."""
        key = sc.path_key(path)
        if seal:
            txn.put(key, seal, db=self.dbs[sc.DB_SEALS])
        else:
            txn.delete(key, db=self.dbs[sc.DB_SEALS])

    def delete_package(self, txn: lmdb.Transaction, path: str) -> None:
        """Forget a package and its file records."""
        key = sc.path_key(path)
        raw = txn.get(key, db=self.dbs[sc.DB_PACKAGES])
        if raw is None:
            return
        self._unname(txn, sc.decode_package(raw).name, path)
        txn.delete(key, db=self.dbs[sc.DB_PACKAGES])
        txn.delete(key, db=self.dbs[sc.DB_SEALS])
        self._replace_files(txn, path, [])

    def put_root(self, txn: lmdb.Transaction, root: str) -> None:
        """Record a root (kept across restarts)."""
        value = json.dumps({"path": root, "added_ns": time.time_ns()}).encode()
        txn.put(sc.path_key(root), value, db=self.dbs[sc.DB_ROOTS])

    def delete_root(self, txn: lmdb.Transaction, root: str) -> None:
        """Forget a root (its packages are the caller's)."""
        txn.delete(sc.path_key(root), db=self.dbs[sc.DB_ROOTS])

    def roots(self) -> list[str]:
        """The roots recorded (``put_root``), sorted."""

        def collect(txn: lmdb.Transaction) -> list[str]:
            cursor = txn.cursor(db=self.dbs[sc.DB_ROOTS])
            return [json.loads(bytes(v))["path"] for _k, v in cursor]

        return sorted(self.read(collect))

    def touch(self, txn: lmdb.Transaction) -> None:
        """Record the time of this write in the meta database."""
        txn.put(sc.META_LAST_WRITE, sc.U64.pack(time.time_ns()), db=self.dbs[sc.DB_META])

    def _replace_files(
        self, txn: lmdb.Transaction, path: str, files: list[tuple[bytes, bytes]]
    ) -> None:
        db = self.dbs[sc.DB_FILES]
        prefix = sc.files_prefix(path)
        cursor = txn.cursor(db=db)
        if cursor.set_range(prefix):
            while cursor.key()[:PREFIX] == prefix:
                if not cursor.delete():
                    break
        if files:
            cursor.putmulti(files)

    def _name(self, txn: lmdb.Transaction, name: str | None, path: str) -> None:
        if name:
            paths = set(self._named(txn, name)) | {path}
            txn.put(sc.name_key(name), json.dumps(sorted(paths)).encode(), db=self.dbs[sc.DB_NAMES])

    def _unname(self, txn: lmdb.Transaction, name: str | None, path: str) -> None:
        if name:
            paths = set(self._named(txn, name)) - {path}
            if paths:
                txn.put(
                    sc.name_key(name), json.dumps(sorted(paths)).encode(), db=self.dbs[sc.DB_NAMES]
                )
            else:
                txn.delete(sc.name_key(name), db=self.dbs[sc.DB_NAMES])

    def _named(self, txn: lmdb.Transaction, name: str) -> list[str]:
        raw = txn.get(sc.name_key(name), db=self.dbs[sc.DB_NAMES])
        return list(json.loads(bytes(raw))) if raw else []


def _keep_private(path: str) -> None:
    """Before the writer writes: refuse an index directory another user owns or can write
    to, or holding another user's file; take the group's and others' bits off the
    directory and its files (a copy of the index keeps their modes). The token is left
    to ``freshd serve``, which replaces one others could read (docs/security.md)."""
    trust.index_dir(path)
    euid = os.geteuid()
    token = locations.token_path(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            os.chmod(path, mode & 0o700)
        with os.scandir(path) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if st.st_uid != euid:
                    raise UntrustedIndexError(
                        f"{entry.path} in the index directory is owned by "
                        f"{trust.who(st.st_uid)}, not by you ({trust.who(euid)}): someone "
                        "else wrote into your index; remove it"
                    )
                if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 and entry.path != token:
                    os.chmod(entry.path, stat.S_IMODE(st.st_mode) & 0o700)
    except OSError as exc:
        raise IndexStoreError(f"cannot use index directory {path}: {exc.strerror or exc}") from exc


def _begin_unsynced(path: str) -> bool:
    """Before the writer opens the index: rebuild one torn by a machine crash, then, where
    the boot can be told, record it in the ``UNSYNCED_NAME`` file (flushed) so that commits
    need not be flushed one by one. False: commits are flushed (no boot id, no space)."""
    marker = os.path.join(path, sc.UNSYNCED_NAME)
    if sc.torn(path):
        log.warning(
            "the index at %s was being written when the machine stopped: rebuilding it", path
        )
        for name in ("data.mdb", "lock.mdb", sc.UNSYNCED_NAME):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(path, name))
    boot = sc.boot_id()
    if boot is None:
        return False
    try:
        write_atomic(marker, boot.encode("ascii") + b"\n", durable=True, mode=0o600)
    except OSError as exc:
        log.warning("cannot write %s (%s): every commit is flushed", marker, exc.strerror or exc)
        return False
    return True


def _take_lock(lock_path: str, owner: dict[str, Any]) -> int:
    """Take the single-writer lock; IndexLockedError names the holder."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise IndexStoreError(f"cannot open {lock_path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode(errors="replace").strip()
        os.close(fd)
        try:
            info = json.loads(holder)
            who = ", ".join(f"{k} {v}" for k, v in info.items())
        except ValueError:
            who = "an unknown process"
        raise IndexLockedError(f"index {os.path.dirname(lock_path)} is in use by {who}") from None
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), **owner}).encode())
    return fd
