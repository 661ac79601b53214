"""Crash safety and a full disk (issue 5, item 2).

``kill -9`` at seeded random points while ``churn_model.Churn`` changes packages (and,
in some rounds, while the daemon is still crawling), restart on the same index: the
index must open and decode, every ``clean`` record must agree with its own file
records, and after ``ready`` the answers must equal the oracle exactly.

The disk filling up: the index on a small tmpfs, filled by another file. Answers turn
unknown (never fresh), the daemon keeps serving, and it recovers once space returns.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("daemon_harness", "churn_model")
from churn_model import Churn, check_sync, soak_seeds  # noqa: E402
from daemon_harness import Daemon, Factory, make_package, oracle, wait_until, write  # noqa: E402
from freshd_client.spec import digest as dg  # noqa: E402
from freshd_client.spec import schema as sc  # noqa: E402
from freshd_client.spec.mapgate import MapGate  # noqa: E402

pytest_plugins = ["daemon_harness"]

SHORT_ROUNDS = 15
ARGS = ("--workers", "2", "--rescan-seconds", "0.5")


def check_index(db: Path) -> int:
    """The index opens and decodes; a clean record's tree digest is the digest of its
    own stored file records (no half-written package). Returns the packages checked."""
    env = sc.open_env(str(db), readonly=True)
    try:
        with MapGate(env, str(db)).reading() as txn:
            packages_db = env.open_db(sc.DB_PACKAGES, txn=txn, create=False)
            files_db = env.open_db(sc.DB_FILES, txn=txn, create=False)
            records = [sc.decode_package(v) for _k, v in txn.cursor(db=packages_db)]
            for record in records:
                files = sc.get_files(txn, files_db, record.path)
                if record.state != "clean":
                    continue
                entries = (dg.Entry(os.fsencode(r.rel), r.kind, r.digest) for r in files.values())
                assert dg.package_digest(entries, "tree") == record.tree, (
                    f"{record.path} is clean with a digest its file records do not give"
                )
                assert record.files == len(files), record
    finally:
        env.close()
    return len(records)


def crash_rounds(factory: Factory, seed: int, base: Path, rounds: int) -> tuple[int, int]:
    """``rounds`` kill -9/restart cycles of seed ``seed``; (operations, kills)."""
    churn = Churn(seed, base, packages=5, files=30)
    daemon = factory(churn.root, args=ARGS)
    kills = 0
    for n in range(rounds):
        during_crawl = churn.rng.random() < 0.25
        if during_crawl:
            daemon.stop()
            daemon.start()  # killed below while it indexes, before `ready`
        count = churn.rng.randint(3, 30)
        kill_at = churn.rng.randrange(count)
        pause = churn.rng.uniform(0, 0.05)
        lines = []
        for i in range(count):
            lines.append(churn.step())
            if i == kill_at:
                time.sleep(pause)  # a random kill point, not a wait for the daemon
                daemon.kill9()
                kills += 1
        where = "while crawling" if during_crawl else "during churn"
        churn.log.append(f"round {n}: kill -9 {where} after op {kill_at}: " + "; ".join(lines))
        with churn.failure(f"round {n}"):
            check_index(daemon.db)
            daemon.start()
            daemon.wait_status("ready")
            check_sync(daemon, churn.root, churn.expected(), {})
    daemon.stop()
    return sum(line.count(";") + 1 for line in churn.log), kills


def test_kill9_during_churn_then_exact_after_restart(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    operations, kills = crash_rounds(freshd_factory, 5150, tmp_path / "crash", SHORT_ROUNDS)
    assert kills == SHORT_ROUNDS and operations > SHORT_ROUNDS


@pytest.mark.soak
@pytest.mark.timeout(0)
def test_kill9_soak(
    freshd_factory: Factory,
    tmp_path: Path,
    pytestconfig: pytest.Config,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from test_churn import report

    started = time.monotonic()
    seeds, operations, kills = [], 0, 0
    options = pytestconfig.getoption("soak_seed"), pytestconfig.getoption("soak_minutes")
    for seed in soak_seeds(*options):
        done, killed = crash_rounds(freshd_factory, seed, tmp_path / f"crash{seed}", 25)
        seeds.append(seed)
        operations += done
        kills += killed
    report(
        capsys,
        f"crash soak: {kills} kill -9 survived, {operations} operations, seeds "
        f"{seeds[0]}..{seeds[-1]} ({len(seeds)}), {time.monotonic() - started:.0f} s",
    )


# -- the disk fills up ------------------------------------------------------------------


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(directory: Path) -> Path:
    """A file that takes every free block of ``directory``'s file system."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):  # ENOSPC: full
            while os.write(fd, b"\xff" * 65536):
                pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_makes_answers_unknown_and_recovers(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    packages = [make_package(root, f"pkg{i}") for i in range(3)]
    with small_tmpfs(tmp_path / "small", "4m") as small:
        daemon: Daemon = freshd_factory(root, db=small / "index", args=ARGS)
        before = oracle(packages[0]).tree
        filler = fill(small)
        # Enough new records that a transaction needs pages the full disk cannot give.
        for i in range(300):
            write(packages[0] / f"src/pkg0/new{i}.py", f"n = {i}\n" * 20)
        after = oracle(packages[0]).tree

        def failing() -> dict[str, object] | None:
            health = daemon.health()
            return health if health["error"] else None

        health = wait_until(failing, "the daemon to report that index writes fail")
        # ENOSPC from a write, or EIO when LMDB's write to the full file system fails
        # at commit: the same condition, reported as LMDB saw it.
        problem = str(health["error"]).lower()
        assert "cannot write index" in problem, health
        assert "no space left" in problem or "input/output error" in problem, health
        for sync in (False, True):
            results = daemon.fresh([(packages[0], before), (packages[0], after)], sync=sync)
            assert [r["fresh"] for r in results["results"]] == [None, None], results
        assert daemon.answers()

        filler.unlink()
        wait_until(lambda: not daemon.health()["error"], "the daemon to recover")
        check_sync(daemon, root, expected(packages), {})
        check_index(small / "index")


def expected(packages: list[Path]) -> dict[str, object]:
    from churn_model import Expect

    result: dict[str, object] = {}
    for path in packages:
        o = oracle(path)
        result[str(path)] = Expect(o.tree, o.meta, o.files, trusted=True)
    return result
