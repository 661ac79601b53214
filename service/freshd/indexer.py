"""Build or refresh the index of every package under some roots (``freshd index``).

Discovery runs in this process down to the first package on each path; packages
are scanned in a pool of worker processes (walk + stat + BLAKE3 in parallel), each
scan reporting the packages inside its own, which are scanned in turn: the tree is
walked once. Results are written to LMDB here, the single writer, in batches.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    as_completed,
    wait,
)
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import lmdb

from freshd import seals
from freshd.index import Index
from freshd_client import schema as sc
from freshd_client.discovery import (
    Package,
    discover,
    found_inside,
    workspace_members,
)
from freshd_client.errors import PackagePathError
from freshd_client.locations import real_path
from freshd_client.mapgate import MapGate
from freshd_client.project import Project, project_or_none
from freshd_client.scan import ScanResult, rescan_files, scan

T = TypeVar("T")
Progress = Callable[[int, int], None]
"""Called with (packages done, packages total)."""

_BATCH_SECONDS = 0.25
_BATCH_RECORDS = 4000  # or sooner: the last batch, written once the workers are done, stays small
_JOBS_PER_WORKER = 4  # of the guided schedule's first round (more follow, smaller)


DirIdentity = tuple[str, int, int]
"""A directory a scan listed: (relative path, st_dev, st_ino); the engine checks that
the kernel watches each (``watchset``)."""


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
    dirs: dict[str, list[DirIdentity]] = field(default_factory=dict)  # Outcome.dirs


def canonical_root(path: str) -> str:
    """The canonical absolute path of a root; PackagePathError if it is not a directory."""
    real = real_path(path)
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
    walked: tuple[list[str], list[str]] | None = None  # ScanResult.walked
    seal: bytes | None = None  # to store (b"": none may stand); None: the stored one stands
    dirs: list[DirIdentity] | None = None  # the directories a full walk listed (or sealed)


def _outcome(
    path: str, old: sc.PackageRecord | None, previous: dict[str, sc.FileRecord]
) -> Outcome:
    clean_old = old is not None and old.state == "clean"
    started = time.time_ns()  # before anything is read: the seal's racy rule
    project = project_or_none(path)  # None: the scan reports why
    dirs: list[tuple[str, os.stat_result]] = []
    result = scan(
        path,
        previous,
        previous_tree=old.tree if clean_old and old else None,
        dirs=dirs,
        project=project,
    )
    same_files = clean_old and result.same_files
    pairs = None if same_files else sc.encode_files(path, [] if result.error else result.records)
    outcome = _from_scan(result, pairs)
    outcome.seal = seals.take(result, project, dirs, started) if project is not None else b""
    outcome.dirs = [(rel, st.st_dev, st.st_ino) for rel, st in dirs]
    return outcome


def _sealed(path: str, seal: seals.Seal) -> Outcome | None:
    """The outcome of a package whose seal holds (None when it does not): the stored
    records stand, and so does the package record."""
    if not seal.holds(path):
        return None
    return Outcome(
        path,
        seal.name,
        seal.tree,
        seal.meta,
        None,
        seal.files,
        0,
        seal.files,
        0,
        None,
        links=seal.links,
        walked=(seal.nested, seal.hidden),
        dirs=seal.directories(),
    )


def _from_scan(
    result: ScanResult, pairs: list[tuple[bytes, bytes]] | None, *, partial: bool = False
) -> Outcome:
    return Outcome(
        result.path,
        result.name,
        result.tree,
        # A meta digest that reads what the watcher cannot see (an env value, which is
        # the asker's, a glob, a path out of the package, a symlinked key) is not kept:
        # the daemon answers null (unknown) for the meta scope and the client computes it.
        None if result.meta_local else result.meta,
        result.error,
        len(result.records),
        result.hashed,
        result.reused,
        result.hashed_bytes,
        pairs,
        partial,
        result.links,
        result.walked,
    )


Known = tuple[str, dict[str, sc.FileRecord], dict[str, bytes] | None]
"""A package's file records kept between rescans: (tree digest, records by relative
path, the digest's encoded entries from ``ScanResult.encoded``)."""


def rescan_job(
    index: Index,
    path: str,
    changed: set[str],
    known: dict[str, Known] | None = None,
) -> Outcome | None:
    """Rehash only the ``changed`` files of a package the watcher follows (its own
    process); None when the stored state does not allow it or a full scan is needed.

    ``known`` (the caller bounds its size): file records of earlier rescans by package,
    with the tree digest they give and that digest's encoded entries. They stand in for
    the stored records while the stored tree digest is that one: the same digest means
    the same paths, kinds and digests, all that a rescan reads of the unchanged files
    (decoding a package's records from LMDB costs more than rehashing one small file)."""
    packages_db, files_db = index.dbs[sc.DB_PACKAGES], index.dbs[sc.DB_FILES]
    memo = known.get(path) if known is not None else None

    def stored(
        txn: lmdb.Transaction,
    ) -> tuple[sc.PackageRecord | None, dict[str, sc.FileRecord], dict[str, bytes] | None]:
        record = sc.get_package(txn, packages_db, path)
        if memo is not None and record is not None and record.tree == memo[0]:
            return record, memo[1], memo[2]
        return record, sc.get_files(txn, files_db, path) if record else {}, None

    old, previous, encoded = index.read(stored)
    if old is None or old.tree is None or old.state not in ("clean", "dirty"):
        return None
    result = rescan_files(path, previous, changed, encoded)
    if result is None:
        return None
    records = {r.rel: r for r in result.records}
    if known is not None:
        known.pop(path, None)  # re-inserted last: the caller evicts the oldest first
        if result.tree is not None:
            known[path] = (result.tree, records, result.encoded)
    prefix = sc.files_prefix(path)
    pairs = [
        (sc.file_key(prefix, rel), sc.encode_file(records[rel]) if rel in records else b"")
        for rel in changed
        if rel in records or rel in previous
    ]
    outcome = _from_scan(result, None if result.error else pairs, partial=not result.error)
    outcome.seal = b""  # taken by full scans only
    return outcome


_READERS: dict[str, tuple[MapGate, Any, Any, Any]] = {}


class _JobStoppedError(Exception):
    """A worker's job stopped by its pool (``_Pool.stop_jobs``): its work is thrown away."""


_STOP_SIGNAL = signal.SIGUSR1
_stopping = False  # in a worker: its pool stopped its jobs, every later one stops at once
_in_job = False  # in a worker: a job runs, and may be stopped where it stands


def _stop_jobs(_signum: int, _frame: object) -> None:
    """In a worker, on ``_STOP_SIGNAL``: raise in the running job, if any. The executor
    sends the exception back whole, as any job's; never raised while a result is being
    sent (killing the worker there left a part of a message in the results pipe, and the
    executor's thread waiting for the rest for ever: the interpreter's exit hung)."""
    global _stopping
    _stopping = True
    if _in_job:
        raise _JobStoppedError("stopped by its pool")


def _worker_job(paths: list[str], index_dir: str, sealed: bool = False) -> list[Outcome]:
    """Runs in a worker process: for each package, read the stored records read-only,
    scan, encode. ``sealed``: a package whose seal holds is not scanned (the start-up
    crawl's; a rescan after events always scans)."""
    global _in_job
    try:
        _in_job = True
        if _stopping:
            raise _JobStoppedError("stopped by its pool")
        return _worker_scan(paths, index_dir, sealed)
    finally:
        _in_job = False


def _worker_scan(paths: list[str], index_dir: str, sealed: bool) -> list[Outcome]:
    if index_dir not in _READERS:
        env = sc.open_env(index_dir, readonly=True)
        try:
            seals_db = env.open_db(sc.DB_SEALS, create=False)
        except lmdb.NotFoundError:
            seals_db = None  # an index no daemon of this version has opened yet
        _READERS[index_dir] = (
            MapGate(env, index_dir),
            env.open_db(sc.DB_PACKAGES, create=False),
            env.open_db(sc.DB_FILES, create=False),
            seals_db,
        )
    gate, packages_db, files_db, seals_db = _READERS[index_dir]
    # Scans run outside the read transactions: readers stay short.
    return [_job(gate.read, packages_db, files_db, seals_db if sealed else None, p) for p in paths]


def _local_job(index: Index, path: str, sealed: bool = False) -> Outcome:
    """Runs in the writer's process (LMDB forbids a second environment handle there)."""
    seals_db = index.dbs[sc.DB_SEALS] if sealed else None
    return _job(index.read, index.dbs[sc.DB_PACKAGES], index.dbs[sc.DB_FILES], seals_db, path)


def _job(
    read: Callable[[Callable[[lmdb.Transaction], Any]], Any],
    packages_db: Any,
    files_db: Any,
    seals_db: Any,
    path: str,
) -> Outcome:
    if seals_db is not None:
        seal = read(lambda txn: seals.load(txn, seals_db, sc.get_package(txn, packages_db, path)))
        if seal is not None and (outcome := _sealed(path, seal)) is not None:
            return outcome
    # One snapshot for both, so the stored tree digest matches the stored records.
    old, previous = read(
        lambda txn: (sc.get_package(txn, packages_db, path), sc.get_files(txn, files_db, path))
    )
    return _outcome(path, old, previous)


def scan_packages(index: Index, paths: Sequence[str], pool: Executor | None) -> Iterator[Outcome]:
    """Scan packages (canonical paths), in ``pool``'s processes when given, as they finish."""
    if pool is None or isinstance(pool, _InlineExecutor) or len(paths) == 1:
        for path in paths:
            yield _local_job(index, path)
        return
    futures = [pool.submit(_worker_job, [path], index.path) for path in paths]
    for future in as_completed(futures):
        yield from future.result()


def _jobs(paths: Sequence[str], sizes: Mapping[str, int], parts: int) -> list[list[str]]:
    """Packages grouped into jobs (a job costs ~0.15 ms of inter-process traffic): each
    takes at least 1/``parts`` of the files still left, so the last ones are small and
    the workers finish together (guided self-scheduling)."""
    weights = [max(sizes.get(p, 0), 1) for p in paths]
    left = sum(weights)
    jobs: list[list[str]] = []
    job: list[str] = []
    taken = 0
    for path, weight in zip(paths, weights, strict=True):
        job.append(path)
        taken += weight
        if taken * parts >= left:
            jobs.append(job)
            left -= taken
            job, taken = [], 0
    if job:
        jobs.append(job)
    return jobs


def index_roots(
    index: Index,
    roots: Sequence[str],
    *,
    workers: int,
    progress: Progress | None = None,
    pool: Executor | None = None,
) -> Summary:
    """Bring the index up to date with the packages under ``roots`` (canonical paths).
    A daemon watches the roots before: whatever changes after a directory is listed is
    an event."""
    started = time.perf_counter()
    summary = Summary(roots=list(roots))
    found = _Found(roots)
    # A new pool's processes start up while discovery walks the roots.
    with make_pool(workers) if pool is None else contextlib.nullcontext(pool) as executor:
        for i, root in enumerate(roots):
            # Their project files are read later, once the workers are busy.
            top = discover(root, inside_packages=False, read=False)
            summary.errors.extend(top.problems)
            found.unread.update(p.path for p in top.packages if p.path not in found.projects)
            found.add({p.path: p.project for p in top.packages}, {i})
        stored: dict[str, tuple[Package, Outcome]] = {}
        pending: list[Outcome] = []
        records = 0  # file records pending
        last_flush = time.perf_counter()

        def flush() -> None:
            batch = list(pending)
            pending.clear()
            by_path = found.packages()
            index.write(lambda txn: store(index, txn, by_path, batch))
            light = [replace(o, pairs=None, seal=None, dirs=None) for o in batch]
            stored.update((o.path, (by_path[o.path], o)) for o in light)

        announced = False

        def busy() -> None:  # every worker holds a job: the caller may load what it needs
            nonlocal announced
            if not announced and progress is not None:
                progress(0, len(found.projects))
            announced = True

        scanned = _scan_found(index, executor, found, summary.errors, busy)
        for done, outcome in enumerate(scanned, 1):
            _account(summary, outcome)
            pending.append(outcome)
            records += len(outcome.pairs or ())
            if records >= _BATCH_RECORDS or time.perf_counter() - last_flush > _BATCH_SECONDS:
                records = 0
                flush()
                last_flush = time.perf_counter()
            if progress is not None:
                progress(done, len(found.projects))
        busy()  # when there was nothing to scan
        if executor is not pool:
            executor.shutdown(wait=False)  # the workers exit while the last batch is written
        flush()
    # A package found before the workspace or the later root that claims it is stored again.
    final = found.packages()
    moved = [light for path, (pkg, light) in stored.items() if final[path] != pkg]
    if moved:
        index.write(lambda txn: store(index, txn, final, moved))
    summary.found = [pkg for i in range(len(roots)) for pkg in found.of_root(i, final)]
    summary.packages = len(final)
    summary.removed = index.write(lambda txn: _forget_missing(index, txn, roots, set(final)))
    summary.seconds = time.perf_counter() - started
    return summary


class _Found:
    """The packages found so far, and which roots' walks found each (a later root's
    claim wins, as when each root was discovered whole)."""

    def __init__(self, roots: Sequence[str]) -> None:
        self.roots = roots
        self.projects: dict[str, Project | None] = {}
        self.claims: dict[str, set[int]] = {}
        self.inside: dict[str, list[str]] = {}  # packages found by each package's scan
        self.unread: set[str] = set()  # packages whose project files are not read yet
        self._packages: dict[str, Package] | None = None

    def add(self, projects: dict[str, Project | None], claims: set[int]) -> list[str]:
        """Record packages found by the walks of the roots ``claims``; return the new ones."""
        new = [path for path in projects if path not in self.projects]
        self.projects.update((path, projects[path]) for path in new)
        for path in projects:
            self._claim(path, claims)
        if new:
            self._packages = None
        return new

    def add_inside(self, package: str, projects: dict[str, Project | None]) -> list[str]:
        """Record the packages a package's scan found inside it; return the new ones."""
        self.inside[package] = list(projects)
        return self.add(projects, self.claims[package])

    def _claim(self, path: str, claims: set[int]) -> None:
        known = self.claims.setdefault(path, set())
        if not claims <= known:
            known |= claims
            self._packages = None
            for inner in self.inside.get(path, ()):
                self._claim(inner, known)

    def packages(self) -> dict[str, Package]:
        """Every package found, by path, as discovery of each root describes it."""
        if self.unread:
            self.projects.update((path, project_or_none(path)) for path in self.unread)
            self.unread.clear()
            self._packages = None
        if self._packages is None:
            members = workspace_members(self.projects)
            self._packages = {
                path: Package(
                    path,
                    project.name if project else None,
                    self.roots[max(self.claims[path])],
                    members.get(path),
                    project,
                )
                for path, project in self.projects.items()
            }
        return self._packages

    def of_root(self, i: int, final: dict[str, Package]) -> list[Package]:
        """The packages the walk of root ``i`` found (``discover(roots[i])``), by path."""
        return [
            replace(final[path], root=self.roots[i])
            for path in sorted(self.projects)
            if i in self.claims[path]
        ]


def _scan_found(
    index: Index,
    pool: Executor,
    found: _Found,
    problems: list[str],
    busy: Callable[[], None],
) -> Iterator[Outcome]:
    """Scan every package found, and those their scans find inside them, as they finish.
    ``busy()`` is called as soon as
    every worker has a job (without a pool, before the first scan), and again later: the
    caller heeds the first call."""
    sizes = _stored_sizes(index, found.projects)
    queue = sorted(found.projects, key=lambda p: -sizes[p])  # big ones first balance the pool

    def inside(outcome: Outcome) -> list[str]:
        projects = found_inside(outcome.path, outcome.walked, problems)
        new = found.add_inside(outcome.path, projects)
        sizes.update(_stored_sizes(index, new))
        return sorted(new, key=lambda p: -sizes[p])

    if not isinstance(pool, _Pool):
        busy()
        while queue:
            outcome = _local_job(index, queue.pop(0), sealed=True)
            queue += inside(outcome)
            yield outcome
        return
    workers = pool.workers
    running: set[Future[list[Outcome]]] = set()
    while queue or running:
        if len(queue) == 1 and not running:  # not worth the round trip to a worker
            busy()
            outcome = _local_job(index, queue.pop(), sealed=True)
            queue += inside(outcome)
            yield outcome
            continue
        for job in _jobs(queue, sizes, _JOBS_PER_WORKER * workers):
            running.add(pool.submit(_worker_job, job, index.path, True))
            if len(running) == workers:
                busy()
        busy()  # fewer jobs than workers
        queue = []
        done, running = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            for outcome in future.result():
                queue += inside(outcome)
                yield outcome


def _stored_sizes(index: Index, paths: Iterable[str]) -> dict[str, int]:
    """The number of files each package had when last indexed (0 if it was not)."""
    db = index.dbs[sc.DB_PACKAGES]
    return index.read(
        lambda txn: {p: (r.files if (r := sc.get_package(txn, db, p)) else 0) for p in paths}
    )


def _account(summary: Summary, outcome: Outcome) -> None:
    summary.files += outcome.files
    summary.hashed += outcome.hashed
    summary.reused += outcome.reused
    summary.hashed_bytes += outcome.hashed_bytes
    summary.links[outcome.path] = outcome.links
    if outcome.dirs is not None:
        summary.dirs[outcome.path] = outcome.dirs
    if outcome.error is not None:
        summary.errors.append(f"{outcome.path}: {outcome.error}")


def store(
    index: Index, txn: lmdb.Transaction, by_path: dict[str, Package], batch: list[Outcome]
) -> list[sc.PackageRecord]:
    """Write scan outcomes (in a write transaction); return the records that changed."""
    written: list[sc.PackageRecord] = []
    for out in batch:
        pkg = by_path[out.path]
        if out.seal is not None:
            index.put_seal(txn, pkg.path, out.seal)
        old = sc.get_package(txn, index.dbs[sc.DB_PACKAGES], pkg.path)
        state: sc.State = "error" if out.error else "clean"
        name = pkg.name if out.error else out.name
        if (
            old is not None
            and out.pairs is None
            and (old.state, old.tree, old.meta, old.name, old.root, old.workspace)
            == (state, out.tree, out.meta, name, pkg.root, pkg.workspace)
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


def make_pool(workers: int, *, fork: bool = False) -> Executor:
    """A pool of ``workers`` scanning processes (in-process when ``workers`` is 1).

    ``fork``: the processes are forked from the caller, now, instead of started afresh
    (each spawned one spends ~80 ms of CPU importing what a job needs, on a core the
    caller may need). Only for a caller that has no thread, no LMDB environment, no
    lock and no socket open yet: a forked child holds copies of them all (Linux only;
    elsewhere the processes are spawned).

    Leaving a ``with`` block of the pool by an exception (Ctrl-C) stops its jobs at once,
    their work thrown away (``_Pool.stop_jobs``)."""
    if workers <= 1:
        return _InlineExecutor()
    # spawn: workers start from a clean process, never from one holding LMDB or threads,
    # and as the daemon's own children, so they can be tied to its life (a forkserver's
    # children outlive a `kill -9` of the daemon).
    fork = fork and sys.platform.startswith("linux")
    context = multiprocessing.get_context("fork" if fork else "spawn")
    pool = _Pool(workers, mp_context=context, initializer=_die_with_parent, initargs=(os.getpid(),))
    before = set(multiprocessing.active_children())
    # Ctrl-C in a terminal reaches the whole process group, workers included: they are
    # started with SIGINT blocked (a mask survives fork and exec), so one still importing
    # what it needs cannot print a KeyboardInterrupt traceback, and ignore it from their
    # initializer on. Blocked here, not ignored, a Ctrl-C meanwhile is delivered to the
    # caller once the processes are started (the method of CPython's resource tracker).
    # The stop signal too: a worker gets its handler before it can be stopped.
    masked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, _STOP_SIGNAL})
    try:
        # Start the processes now (the executor starts one per job submitted, when it
        # is submitted): each takes ~80 ms to import what a job needs, time the caller
        # can use.
        for _ in range(workers):
            pool.submit(os.getpid)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, masked)
    pool.processes = [p for p in multiprocessing.active_children() if p not in before]
    return pool


class _Pool(ProcessPoolExecutor):
    """A process pool that says how many processes it has, and stops their jobs at once
    when its ``with`` block is left by an exception."""

    def __init__(self, workers: int, **kwargs: Any) -> None:
        super().__init__(max_workers=workers, **kwargs)
        self.workers = workers
        self.processes: list[multiprocessing.process.BaseProcess] = []

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        if exc_type is not None:
            self.stop_jobs()
        return super().__exit__(exc_type, exc, tb)

    def stop_jobs(self) -> None:
        """Cancel the jobs not started and stop the running ones where they stand
        (``_JobStoppedError``, in each worker): the pool then shuts down at once instead
        of after every job running. Their results are lost: only the caller writes them."""
        self.shutdown(wait=False, cancel_futures=True)
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):  # already gone
                if process.pid is not None:
                    os.kill(process.pid, _STOP_SIGNAL)


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

    # Ctrl-C in a terminal reaches the whole process group: the daemon (or `freshd
    # index`) stops the pool itself, and a worker interrupted while it waits for a job
    # only printed a KeyboardInterrupt traceback. Ignored before it is unblocked: one
    # pending since the start is discarded (make_pool).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(_STOP_SIGNAL, _stop_jobs)  # blocked until now too: its default kills
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, _STOP_SIGNAL})
    threading.Thread(target=watch, name="freshd-parent-watch", daemon=True).start()
