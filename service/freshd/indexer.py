"""Build or refresh the index of every package under some roots (``freshd index``).

Discovery runs in this process; packages are scanned in a pool of worker
processes (walk + stat + BLAKE3 in parallel), and results are written to LMDB
here, the single writer, in batches.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, TypeVar

import lmdb

from freshd.discovery import Package, discover
from freshd.index import Index
from freshd_client import schema as sc
from freshd_client.errors import PackagePathError
from freshd_client.scan import ScanResult, rescan_files, scan

T = TypeVar("T")
Progress = Callable[[int, int], None]
"""Called with (packages done, packages total)."""

_BATCH_SECONDS = 0.25


@dataclass(slots=True)
class Summary:
    """What one indexing pass did."""

    roots: list[str]
    packages: int = 0
    files: int = 0
    hashed: int = 0
    reused: int = 0
    hashed_bytes: int = 0
    removed: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    found: list[Package] = field(default_factory=list)
    links: dict[str, list[tuple[str, int, int, int]]] = field(default_factory=dict)


def canonical_root(path: str) -> str:
    """The canonical absolute path of a root; PackagePathError if it is not a directory."""
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise PackagePathError(f"{path}: no such directory")
    if not os.path.isdir(real):
        raise PackagePathError(f"{path}: not a directory")
    if not os.access(real, os.R_OK | os.X_OK):
        raise PackagePathError(f"{path}: permission denied")
    return real


@dataclass(slots=True)
class Outcome:
    """A scanned package as the writer needs it: compact, cheap to pickle."""

    path: str
    name: str | None
    tree: str | None
    meta: str | None
    error: str | None
    files: int
    hashed: int
    reused: int
    hashed_bytes: int
    pairs: list[tuple[bytes, bytes]] | None  # encoded file records; None: stored ones stand
    partial: bool = False  # pairs update only these keys (an empty value deletes one)
    links: list[tuple[str, int, int, int]] = field(default_factory=list)  # ScanResult.links


def _outcome(
    path: str, old: sc.PackageRecord | None, previous: dict[str, sc.FileRecord]
) -> Outcome:
    clean_old = old is not None and old.state == "clean"
    result = scan(path, previous, previous_tree=old.tree if clean_old and old else None)
    same_files = clean_old and result.same_files
    pairs = None if same_files else sc.encode_files(path, [] if result.error else result.records)
    return _from_scan(result, pairs)


def _from_scan(
    result: ScanResult, pairs: list[tuple[bytes, bytes]] | None, *, partial: bool = False
) -> Outcome:
    return Outcome(
        result.path,
        result.name,
        result.tree,
        result.meta,
        result.error,
        len(result.records),
        result.hashed,
        result.reused,
        result.hashed_bytes,
        pairs,
        partial,
        result.links,
    )


def rescan_job(index: Index, path: str, changed: set[str]) -> Outcome | None:
    """Rehash only the ``changed`` files of a package the watcher follows (its own
    process); None when the stored state does not allow it or a full scan is needed."""
    dbs = index.dbs[sc.DB_PACKAGES], index.dbs[sc.DB_FILES]
    old, previous = index.read(lambda txn: _stored(txn, *dbs, path))
    if old is None or old.tree is None or old.state not in ("clean", "dirty"):
        return None
    result = rescan_files(path, previous, changed)
    if result is None:
        return None
    records = {r.rel: r for r in result.records}
    prefix = sc.files_prefix(path)
    pairs = [
        (sc.file_key(prefix, rel), sc.encode_file(records[rel]) if rel in records else b"")
        for rel in changed
        if rel in records or rel in previous
    ]
    if result.error:
        return _from_scan(result, None)
    return _from_scan(result, pairs, partial=True)


_READERS: dict[str, tuple[lmdb.Environment, Any, Any]] = {}


def _worker_job(path: str, index_dir: str) -> Outcome:
    """Runs in a worker process: read the stored records read-only, scan, encode."""
    if index_dir not in _READERS:
        env = sc.open_env(index_dir, readonly=True)
        dbs = (env.open_db(sc.DB_PACKAGES, create=False), env.open_db(sc.DB_FILES, create=False))
        _READERS[index_dir] = (env, *dbs)
    env, packages_db, files_db = _READERS[index_dir]
    with sc.begin_read(env) as txn:
        old, previous = _stored(txn, packages_db, files_db, path)
    return _outcome(path, old, previous)  # scanned outside the snapshot: readers stay short


def _local_job(index: Index, path: str) -> Outcome:
    """Runs in the writer's process (LMDB forbids a second environment handle there)."""
    dbs = index.dbs[sc.DB_PACKAGES], index.dbs[sc.DB_FILES]
    return _outcome(path, *index.read(lambda txn: _stored(txn, *dbs, path)))


def _stored(
    txn: lmdb.Transaction, packages_db: Any, files_db: Any, path: str
) -> tuple[sc.PackageRecord | None, dict[str, sc.FileRecord]]:
    # One snapshot for both, so the stored tree digest matches the stored records.
    return sc.get_package(txn, packages_db, path), sc.get_files(txn, files_db, path)


def scan_packages(index: Index, paths: Sequence[str], pool: Executor | None) -> Iterator[Outcome]:
    """Scan packages (canonical paths), in ``pool``'s processes when given, as they finish."""
    if pool is None or isinstance(pool, _InlineExecutor) or len(paths) == 1:
        for path in paths:
            yield _local_job(index, path)
        return
    futures = [pool.submit(_worker_job, path, index.path) for path in paths]
    for future in as_completed(futures):
        yield future.result()


def index_roots(
    index: Index,
    roots: Sequence[str],
    *,
    workers: int,
    progress: Progress | None = None,
    pool: Executor | None = None,
) -> Summary:
    """Bring the index up to date with the packages under ``roots`` (canonical paths)."""
    started = time.perf_counter()
    summary = Summary(roots=list(roots))
    # The pool's processes start while discovery walks the roots.
    with make_pool(workers) if pool is None else contextlib.nullcontext(pool) as executor:
        for root in roots:
            found = discover(root)
            summary.found.extend(found.packages)
            summary.errors.extend(found.problems)
        by_path = {p.path: p for p in summary.found}
        packages_db = index.dbs[sc.DB_PACKAGES]
        sizes = index.read(
            lambda txn: {
                p: (r.files if (r := sc.get_package(txn, packages_db, p)) else 0) for p in by_path
            }
        )
        order = sorted(by_path, key=lambda p: -sizes[p])  # big ones first balance the pool
        summary.packages = len(order)
        pending: list[Outcome] = []
        last_flush = time.perf_counter()

        def flush() -> None:
            batch = list(pending)
            pending.clear()
            index.write(lambda txn: store(index, txn, by_path, batch))

        for done, outcome in enumerate(scan_packages(index, order, executor), 1):
            _account(summary, outcome)
            pending.append(outcome)
            if time.perf_counter() - last_flush > _BATCH_SECONDS:
                flush()
                last_flush = time.perf_counter()
            if progress is not None:
                progress(done, len(order))
    flush()
    summary.removed = index.write(lambda txn: _forget_missing(index, txn, roots, set(by_path)))
    summary.seconds = time.perf_counter() - started
    return summary


def _account(summary: Summary, outcome: Outcome) -> None:
    summary.files += outcome.files
    summary.hashed += outcome.hashed
    summary.reused += outcome.reused
    summary.hashed_bytes += outcome.hashed_bytes
    summary.links[outcome.path] = outcome.links
    if outcome.error is not None:
        summary.errors.append(f"{outcome.path}: {outcome.error}")


def store(
    index: Index, txn: lmdb.Transaction, by_path: dict[str, Package], batch: list[Outcome]
) -> list[sc.PackageRecord]:
    """Write scan outcomes (in a write transaction); return the records that changed."""
    written: list[sc.PackageRecord] = []
    for out in batch:
        pkg = by_path[out.path]
        old = sc.get_package(txn, index.dbs[sc.DB_PACKAGES], pkg.path)
        state: sc.State = "error" if out.error else "clean"
        name = pkg.name if out.error else out.name
        if (
            old is not None
            and out.pairs is None
            and (old.state, old.tree, old.meta, old.name, old.workspace)
            == (state, out.tree, out.meta, name, pkg.workspace)
        ):
            continue  # nothing changed: keep the record and its generation
        record = sc.PackageRecord(
            path=pkg.path,
            name=name,
            root=pkg.root,
            state=state,
            tree=out.tree,
            meta=out.meta,
            files=out.files,
            generation=index.next_generation(txn),
            updated_ns=time.time_ns(),
            error=out.error,
            workspace=pkg.workspace,
        )
        # An error keeps no file records: the next pass hashes everything again.
        if out.partial:
            index.put_package(txn, record, None)
            index.update_files(txn, out.pairs or [])
        else:
            index.put_package(txn, record, [] if out.error else out.pairs)
        written.append(record)
    index.touch(txn)
    return written


def _forget_missing(
    index: Index, txn: lmdb.Transaction, roots: Sequence[str], seen: set[str]
) -> int:
    removed = 0
    for root in roots:
        index.put_root(txn, root)
    inside = tuple(r.rstrip("/") + "/" for r in roots)
    cursor = txn.cursor(db=index.dbs[sc.DB_PACKAGES])
    stale = [
        rec.path
        for rec in (sc.decode_package(v) for _k, v in cursor)
        if rec.path not in seen and (rec.path in roots or rec.path.startswith(inside))
    ]
    for path in stale:
        index.delete_package(txn, path)
        removed += 1
    index.touch(txn)
    return removed


class _InlineExecutor(Executor):
    """Runs jobs in the calling process (one worker, or a single package)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def make_pool(workers: int) -> Executor:
    """A pool of ``workers`` scanning processes (in-process when ``workers`` is 1)."""
    if workers <= 1:
        return _InlineExecutor()
    # spawn: workers start from a clean process, never from one holding LMDB or threads,
    # and as the daemon's own children, so they can be tied to its life (a forkserver's
    # children outlive a `kill -9` of the daemon).
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )


def _die_with_parent(parent: int) -> None:
    """In a worker: exit when the daemon ``parent`` that started it is gone (even by
    ``kill -9``), instead of holding the index open forever.

    A watch on the parent's pid, not PR_SET_PDEATHSIG: that signal fires when the
    *thread* that spawned the worker ends, and the engine thread ends before the pool
    is shut down, which left the shutdown waiting for killed workers. The pid is passed
    in, not read with getppid() here: a daemon killed while the worker was starting has
    already left it to init, and the worker then waited for init to die (found by the
    kill -9 soak: workers orphaned for good).
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="freshd-parent-watch", daemon=True).start()
