"""The LMDB index under load (issue 17, item 8): reader slots left by killed readers
are reclaimed, the map grows while other threads read and write, and an LMDB error
reaches the engine as the project's own exception.

Real LMDB, real processes, real threads; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import Factory, make_package, oracle, wait_until, write  # noqa: E402
from freshd.api.app import Context, create_app  # noqa: E402
from freshd.index.writer import Index  # noqa: E402
from freshd.metrics import Metrics  # noqa: E402
from freshd_client.errors import IndexStoreError  # noqa: E402
from freshd_client.spec import mapgate  # noqa: E402
from freshd_client.spec import schema as sc  # noqa: E402
from freshd_client.spec.mapgate import MapGate  # noqa: E402
from freshd_client.spec.schema import FileRecord  # noqa: E402
from test_app import TREE, FakeEngine, RootMode, ask, record  # noqa: E402

pytest_plugins = ["daemon_harness"]
DEADLINE = 30.0

# A direct reader: opens the index read-only, enters a read transaction, says so, and
# stays inside it until it is killed.
_READER = textwrap.dedent(
    """
    import sys
    from freshd_client.spec import schema as sc
    env = sc.open_env(sys.argv[1], readonly=True)
    txn = env.begin()
    txn.get(sc.META_GENERATION, db=env.open_db(sc.DB_META, create=False))
    print("inside", flush=True)
    sys.stdin.read()
    """
)


def _files(n: int, salt: int) -> list[FileRecord]:
    return [
        FileRecord(f"src/m{i:05d}.py", i, salt, salt, i, 1, b"f", os.urandom(32), salt)
        for i in range(n)
    ]


def _put(index: Index, path: str, files: list[FileRecord]) -> None:
    rec = sc.PackageRecord(path, "p", "/", "clean", None, None, len(files), 1, 0)
    index.write(lambda txn: index.put_package(txn, rec, sc.encode_files(path, files)))


def _size(index_dir: Path) -> int:
    return (index_dir / "data.mdb").stat().st_size


def _readers(env: Any) -> set[int]:
    """The pids in LMDB's reader table (``Environment.readers()``: a text table)."""
    pids = set()
    for line in env.readers().splitlines()[1:]:
        fields = line.split()
        if fields and fields[0].isdigit():
            pids.add(int(fields[0]))
    return pids


def _started(code: str, index_dir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", code, str(index_dir)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )


def _said(proc: subprocess.Popen[bytes]) -> bytes:
    """The next line ``proc`` prints (within the deadline)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
    assert ready, "the helper process said nothing"
    return proc.stdout.readline()


def _stopped(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait(DEADLINE)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _killed_inside_a_read(index_dir: Path) -> int:
    """Start a reader process, wait until it is inside a read transaction, SIGKILL it;
    its pid."""
    proc = _started(_READER, index_dir)
    try:
        assert _said(proc) == b"inside\n", "the reader never began its read"
    finally:
        _stopped(proc)
    return proc.pid


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"


def test_a_reader_killed_inside_a_read_stops_pinning_pages(index_dir: Path) -> None:
    """The writer clears the dead reader's slot by itself (periodically), after which
    churn reuses the freed pages: data.mdb stops growing."""
    with Index(str(index_dir)) as index:
        _put(index, "/p", _files(1000, 0))
        pid = _killed_inside_a_read(index_dir)
        assert pid in _readers(index.env), "LMDB itself keeps a killed reader's slot"
        start = _size(index_dir)
        salt = 1
        deadline = time.monotonic() + DEADLINE
        while pid in _readers(index.env):  # the writer clears it while it writes
            assert time.monotonic() < deadline, (
                f"the killed reader's slot was never reclaimed; data.mdb grew from "
                f"{start} to {_size(index_dir)} bytes in {salt} rewrites"
            )
            _put(index, "/p", _files(1000, salt))
            salt += 1
        assert index.stale_readers_cleared >= 1
        for _ in range(5):  # the pages pinned until now become free
            _put(index, "/p", _files(1000, salt := salt + 1))
        settled = _size(index_dir)
        for _ in range(40):
            _put(index, "/p", _files(1000, salt := salt + 1))
        assert _size(index_dir) == settled, (settled, _size(index_dir))


def test_the_daemon_clears_the_slot_of_a_client_killed_inside_a_read(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    pkg = make_package(tmp_path / "root", "pkg")
    daemon = freshd_factory(tmp_path / "root")
    pid = _killed_inside_a_read(daemon.db)

    def cleared() -> bool:
        metrics = daemon.request("GET", "/metrics").raw.decode()
        return "freshd_stale_readers_cleared 1.0" in metrics.splitlines()

    wait_until(cleared, "the daemon to clear the killed reader's slot")  # by its heartbeat
    env = sc.open_env(str(daemon.db), readonly=True)
    try:
        assert pid not in _readers(env)
    finally:
        env.close()
    settled = (daemon.db / "data.mdb").stat().st_size
    for i in range(50):  # each edit: a dirty mark, a clean record, cookies
        write(pkg / "src/pkg/m0.py", f"x = {i}\n")
        result = daemon.fresh([(pkg, oracle(pkg).tree)], sync=True)
        assert result["results"][0]["fresh"] is True, result
    # While the slot pinned pages, every commit took new ones (+12 MB in 10 s of churn).
    grown = (daemon.db / "data.mdb").stat().st_size - settled
    assert grown <= 64 * 1024, grown
    assert "left in the index" in daemon.log()


def test_a_writer_starting_clears_the_slots_of_dead_readers(index_dir: Path) -> None:
    with Index(str(index_dir)) as index:
        _put(index, "/p", _files(10, 0))
    # A live reader keeps the lock file open, so LMDB does not reset its reader table
    # when the next writer opens the environment.
    live = _started(_READER, index_dir)
    try:
        assert _said(live) == b"inside\n"
        dead = _killed_inside_a_read(index_dir)
        with Index(str(index_dir)) as index:
            assert index.stale_readers_cleared == 1
            assert _readers(index.env) & {dead, live.pid} == {live.pid}
    finally:
        _stopped(live)


# -- the map grows while other threads read and write ------------------------------------


def _hammer(
    work: list[Callable[[], None]], grow: Callable[[], bool]
) -> tuple[list[BaseException], list[int]]:
    """Run each of ``work`` in a loop on its own thread while ``grow()`` runs on this one
    until it returns True; the errors the threads met and how often each ran."""
    stop = threading.Event()
    errors: list[BaseException] = []
    rounds = [0] * len(work)

    def loop(n: int) -> None:
        while not stop.is_set():
            try:
                work[n]()
            except BaseException as exc:  # what the test reports
                errors.append(exc)
                return
            rounds[n] += 1

    threads = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(len(work))]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while not all(rounds) and not errors:  # every thread is under way
            assert time.monotonic() < deadline, rounds
            time.sleep(0.001)
        while not grow() and not errors:
            assert time.monotonic() < deadline, "the map did not grow in time"
    finally:
        stop.set()
        for t in threads:
            t.join(DEADLINE)
    assert not any(t.is_alive() for t in threads)
    return errors, rounds


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Index, Any, str]]:
    """An index with a small map, an app over it, and one clean package."""
    root = tmp_path / "root"
    (root / "core").mkdir(parents=True)
    index = Index(str(tmp_path / "index"), map_size=256 * 1024)
    core = f"{root}/core"
    index.write(lambda txn: index.put_package(txn, record(core), None))
    ctx = Context(
        engine=FakeEngine(roots={str(root): RootMode()}),
        index=index,
        metrics=Metrics(),
        socket="/run/freshd.sock",
    )
    try:
        yield index, create_app(ctx), core
    finally:
        index.close()


def test_the_map_grows_while_threads_read_through_the_api(
    small: tuple[Index, Any, str],
) -> None:
    index, app, core = small
    body = json.dumps({"items": [{"path": core, "digest": TREE}]}).encode()
    lookup = f"/v1/packages/lookup?path={core}"

    def fresh() -> None:
        status, _headers, raw = ask(app, "POST", "/v1/fresh", body)
        assert status == 200, raw
        assert json.loads(raw)["results"][0]["fresh"] is True

    def info() -> None:
        status, _headers, raw = ask(app, "GET", lookup)
        assert status == 200, raw
        assert json.loads(raw)["state"] == "clean"

    def listing() -> None:
        assert core in {r.path for r in index.packages()}

    turns = threading.Semaphore(0)

    def beat() -> None:  # a second writer, one write per growing write (LMDB's write lock
        # is not fair: a writer in a tight loop would starve the other)
        if turns.acquire(timeout=0.05):
            index.write(lambda txn: txn.put(b"beat", os.urandom(8), db=index.dbs[sc.DB_META]))

    start = index.env.info()["map_size"]
    grown = [0]

    def grow() -> bool:
        grown[0] += 1
        turns.release()
        _put(index, f"/big/{grown[0]}", _files(1000, grown[0]))
        return bool(index.env.info()["map_size"] >= 8 * start)

    errors, rounds = _hammer([fresh, info, listing, beat], grow)
    assert not errors, f"{len(errors)} failures, the first: {errors[0]!r}"
    assert all(rounds)
    assert index.package(core) == record(core)


# A writer in another process that grows its map eightfold once told to.
_GROWER = textwrap.dedent(
    """
    import os, sys
    from freshd.index.writer import Index
    from freshd_client.spec import schema as sc
    from freshd_client.spec.schema import FileRecord

    def put(index, path, n):
        files = [FileRecord(f"m{i:05d}", i, 1, 1, i, 1, b"f", os.urandom(32), 1) for i in range(n)]
        record = sc.PackageRecord(path, "p", "/", "clean", None, None, n, 1, 0)
        index.write(lambda txn: index.put_package(txn, record, sc.encode_files(path, files)))

    with Index(sys.argv[1], map_size=256 * 1024) as index:
        put(index, "/p", 10)
        print("open", flush=True)
        sys.stdin.readline()
        start, n = index.env.info()["map_size"], 0
        while index.env.info()["map_size"] < 8 * start:
            n += 1
            put(index, f"/big/{n}", 1000)
        print(n + 1, flush=True)
    """
)


def test_readers_in_threads_adopt_a_map_another_process_grew(index_dir: Path) -> None:
    """Each transaction that meets MDB_MAP_RESIZED adopts the new size while the other
    threads of its process wait at the gate (a direct client's threads share one
    environment)."""
    grower = subprocess.Popen(
        [sys.executable, "-c", _GROWER, str(index_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert grower.stdin is not None and grower.stdout is not None
    try:
        ready, _, _ = select.select([grower.stdout], [], [], DEADLINE)
        assert ready and grower.stdout.readline() == "open\n"
        env = sc.open_env(str(index_dir), readonly=True, map_size=64 * 1024)
        try:
            gate = MapGate(env, str(index_dir))
            packages = env.open_db(sc.DB_PACKAGES, create=False)

            def read() -> None:
                assert gate.read(lambda txn: sc.get_package(txn, packages, "/p")) is not None

            def count(txn: Any) -> int:
                return sum(1 for _ in txn.cursor(db=packages))

            def grown() -> bool:
                try:
                    grower.wait(0.05)
                except subprocess.TimeoutExpired:
                    return False
                return True

            grower.stdin.write("go\n")
            grower.stdin.flush()
            errors, _rounds = _hammer([read, read, read], grown)
            assert grower.returncode == 0
            assert not errors, f"{len(errors)} failures, the first: {errors[0]!r}"
            assert gate.read(count) == int(grower.stdout.read())
            assert gate.resizes >= 1
        finally:
            env.close()
    finally:
        grower.kill()
        grower.wait(DEADLINE)
        grower.stdin.close()
        grower.stdout.close()


def test_an_lmdb_error_in_a_read_is_the_projects_own(tmp_path: Path) -> None:
    with Index(str(tmp_path / "index")) as index:
        with pytest.raises(IndexStoreError, match="cannot read index"):
            index.read(lambda txn: txn.get(b"", db=index.dbs[sc.DB_META]))  # LMDB refuses b""
        with pytest.raises(IndexStoreError, match="cannot write index"):
            index.write(lambda txn: txn.put(b"", b"x", db=index.dbs[sc.DB_META]))
        assert index.package("/nothing") is None  # still usable


# -- the gate itself ---------------------------------------------------------------------


def test_a_resize_waits_for_the_transactions_under_way(
    tmp_path: Path,
) -> None:
    with Index(str(tmp_path / "index"), map_size=256 * 1024) as index:
        gate = index.gate
        start = index.env.info()["map_size"]
        held = gate.begin()  # another thread's transaction, under way
        resized = threading.Event()
        later: list[object] = []

        def resize() -> None:
            gate.resize(2 * start, gate.resizes)
            resized.set()

        def read() -> None:
            later.append(index.read(lambda txn: txn.get(b"x", db=index.dbs[sc.DB_META])))
            later.append(resized.is_set())  # it began only once the resize was done

        resizer = threading.Thread(target=resize)
        resizer.start()
        wait_until(lambda: gate._resizing, "the resize to wait at the gate")
        reader = threading.Thread(target=read)
        reader.start()
        wait_until(lambda: reader.ident is not None, "the reader to start")
        assert held.get(b"x", db=index.dbs[sc.DB_META]) is None  # still valid
        assert not resized.is_set()
        gate.end(held)
        assert resized.wait(DEADLINE)
        resizer.join(DEADLINE)
        reader.join(DEADLINE)
        assert later == [None, True]  # a read that came meanwhile was answered, after it
        assert index.env.info()["map_size"] == 2 * start


def test_a_resize_by_a_thread_inside_a_transaction_fails_instead_of_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mapgate, "RESIZE_WAIT_S", 0.2)
    with Index(str(tmp_path / "index")) as index:
        txn = index.gate.begin()
        try:
            with pytest.raises(IndexStoreError, match="transactions still active"):
                index.gate.resize(2 * index.env.info()["map_size"], index.gate.resizes)
        finally:
            index.gate.end(txn)
        assert index.package("/nothing") is None  # the gate is open again
