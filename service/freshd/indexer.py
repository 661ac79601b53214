"""Build or refresh the index of every package under some roots (``freshd index``).

Discovery runs in this process; packages are scanned in a pool of worker
processes (walk + stat + BLAKE3 in parallel), and results are written to LMDB
here, the single writer, in batches.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import lmdb

from freshd.discovery import Package, discover
from freshd.index import Index
from freshd_client import schema as sc
from freshd_client.errors import PackagePathError
from freshd_client.scan import FileRecord, ScanResult, scan

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


def _scan_job(path: str, previous: dict[str, FileRecord]) -> ScanResult:
    return scan(path, previous)


def index_roots(
    index: Index, roots: Sequence[str], *, workers: int, progress: Progress | None = None
) -> Summary:
    """Bring the index up to date with the packages under ``roots`` (canonical paths)."""
    started = time.perf_counter()
    summary = Summary(roots=list(roots))
    packages: list[Package] = []
    for root in roots:
        found = discover(root)
        packages.extend(found.packages)
        summary.errors.extend(found.problems)
    by_path = {p.path: p for p in packages}
    previous = {p.path: index.file_records(p.path) for p in packages}
    order = sorted(by_path, key=lambda p: -len(previous[p]))  # big ones first balance the pool
    summary.packages = len(order)
    pending: list[ScanResult] = []
    last_flush = time.perf_counter()

    def flush() -> None:
        batch = list(pending)
        pending.clear()
        index.write(lambda txn: _store(index, txn, by_path, batch))

    with _executor(workers, len(order)) as pool:
        futures: list[Future[ScanResult]] = [
            pool.submit(_scan_job, path, previous[path]) for path in order
        ]
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            _account(summary, result)
            pending.append(result)
            if time.perf_counter() - last_flush > _BATCH_SECONDS:
                flush()
                last_flush = time.perf_counter()
            if progress is not None:
                progress(done, len(order))
    flush()
    summary.removed = index.write(lambda txn: _forget_missing(index, txn, roots, set(by_path)))
    summary.seconds = time.perf_counter() - started
    return summary


def _account(summary: Summary, result: ScanResult) -> None:
    summary.files += len(result.records)
    summary.hashed += result.hashed
    summary.reused += result.reused
    summary.hashed_bytes += result.hashed_bytes
    if result.error is not None:
        summary.errors.append(f"{result.path}: {result.error}")


def _store(
    index: Index, txn: lmdb.Transaction, by_path: dict[str, Package], batch: list[ScanResult]
) -> None:
    for result in batch:
        pkg = by_path[result.path]
        old_raw = txn.get(sc.path_key(pkg.path), db=index.dbs[sc.DB_PACKAGES])
        old = sc.decode_package(old_raw) if old_raw is not None else None
        state: sc.State = "error" if result.error else "clean"
        if (
            old is not None
            and result.hashed == 0
            and old.state == state == "clean"
            and (old.tree, old.meta, old.files, old.name)
            == (result.tree, result.meta, len(result.records), pkg.name)
        ):
            continue  # nothing changed: keep the record and its generation
        record = sc.PackageRecord(
            path=pkg.path,
            name=pkg.name,
            root=pkg.root,
            state=state,
            tree=result.tree,
            meta=result.meta,
            files=len(result.records),
            generation=index.next_generation(txn),
            updated_ns=time.time_ns(),
            error=result.error,
            workspace=pkg.workspace,
        )
        # An error keeps no file records: the next pass hashes everything again.
        index.put_package(txn, record, [] if result.error else result.records)
    index.touch(txn)


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

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future[object] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def _executor(workers: int, jobs: int) -> Executor:
    if workers <= 1 or jobs <= 1:
        return _InlineExecutor()
    # forkserver: workers start from a clean process, never from one holding LMDB or threads.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["freshd_client.scan"])
    return ProcessPoolExecutor(max_workers=min(workers, jobs), mp_context=context)
