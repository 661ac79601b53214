"""The engine's edit and ``sync`` paths for real: a daemon, real files, an oracle.

A single-file edit is rehashed from the package's earlier file records, which the
engine keeps decoded between edits (``indexer.rescan_job``'s ``known``); a ``sync``
query over HTTP waits for the daemon's own cookie in memory, while a direct client's
cookie is acknowledged in the index. Every answer is checked against digests
recomputed from scratch; conditions are waited for with deadlines.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from freshd_client import Client
from freshd_client.spec import schema as sc
from freshd_client.spec.mapgate import MapGate
from freshd_client.spec.schema import COOKIE_PREFIX

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import (  # noqa: E402
    Factory,
    assert_exact,
    atomic_write,
    make_package,
    oracle,
    wait_until,
    write,
)

pytest_plugins = ["daemon_harness"]


def test_edits_between_whole_package_rescans_stay_exact(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    """Targeted rehashes interleaved with changes that rescan the whole package: records
    kept from before a rescan must never stand in for the rescanned ones (a kept record
    set without ``n.py`` would give a wrong digest after ``n.py`` appeared)."""
    root = tmp_path / "root"
    pkg = make_package(root, "edited")
    src = pkg / "src/edited"
    pyproject = (pkg / "pyproject.toml").read_bytes()
    daemon = freshd_factory(root)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("edit m0", lambda: write(src / "m0.py", "x = 'one'\n")),
        ("edit m0 again", lambda: write(src / "m0.py", "x = 'two'\n")),
        ("edit m1", lambda: write(src / "m1.py", "y = 1\n")),
        ("a new file: whole rescan", lambda: write(src / "n.py", "n = 1\n")),
        ("edit m0 after it", lambda: write(src / "m0.py", "x = 'three'\n")),
        ("a .gitignore drops n.py", lambda: write(pkg / ".gitignore", "n.py\n")),
        ("edit m1 after it", lambda: write(src / "m1.py", "y = 2\n")),
        ("the same pyproject rewritten", lambda: write(pkg / "pyproject.toml", pyproject)),
        ("edit m0 after that", lambda: write(src / "m0.py", "x = 'four'\n")),
        ("the .gitignore emptied", lambda: write(pkg / ".gitignore", "")),
        ("atomic save of m1", lambda: atomic_write(src / "m1.py", "y = 3\n")),
        ("m2 made executable", lambda: os.chmod(src / "m2.py", 0o700)),
        ("n.py deleted", lambda: (src / "n.py").unlink()),
        ("edit m2", lambda: write(src / "m2.py", "z = 1\n")),
    ]
    previous = oracle(pkg).tree
    for what, change in steps:
        change()
        current = oracle(pkg).tree
        answer = daemon.fresh([(pkg, current), (pkg, previous)], sync=True)
        assert answer["synced"] is True, f"{what}: {answer}"
        fresh = [r["fresh"] for r in answer["results"]]
        assert fresh == [True, current == previous], f"{what}: {answer}"
        previous = current
    assert_exact(daemon, [pkg])


def test_edits_across_packages_stay_exact(freshd_factory: Factory, tmp_path: Path) -> None:
    """Edits that move from package to package and back, each answered by a sync query."""
    root = tmp_path / "root"
    packages = [make_package(root, f"p{i}") for i in range(6)]
    daemon = freshd_factory(root)
    for i in range(36):
        pkg = packages[(i * 5) % len(packages)]  # revisits each package after the others
        write(pkg / f"src/{pkg.name}/m{i % 3}.py", f"x = {i}\n")
        answer = daemon.fresh([(pkg, oracle(pkg).tree)], sync=True)
        assert answer["synced"] is True and answer["results"][0]["fresh"] is True, (i, answer)
    assert_exact(daemon, packages)


def test_sync_cookies_are_cleaned_up_and_only_direct_ones_recorded(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    """The daemon waits for its own cookies in memory (no index write per HTTP sync
    query); a direct client's cookie is recorded in the index, which it polls: with the
    records of the edits before it, or alone when nothing changed. Both kinds of cookie
    file are deleted."""
    root = tmp_path / "root"
    pkg = make_package(root, "core")
    daemon = freshd_factory(root)
    for i in range(5):
        write(pkg / "src/core/m0.py", f"x = {i}\n")
        answer = daemon.fresh([(pkg, oracle(pkg).tree)], sync=True)
        assert answer["synced"] is True and answer["results"][0]["fresh"] is True, answer
    with Client(index_dir=str(daemon.db), socket_path=daemon.socket, transport="direct") as c:
        for i in range(3):
            write(pkg / "src/core/m1.py", f"y = {i}\n")
            assert c.is_fresh(str(pkg), oracle(pkg).tree, consistency="sync") is True
        assert c.is_fresh(str(pkg), oracle(pkg).tree, consistency="sync") is True  # no edit

    env = sc.open_env(str(daemon.db), readonly=True)
    try:
        with MapGate(env, str(daemon.db)).reading() as txn:
            cookies = env.open_db(sc.DB_COOKIES, txn=txn, create=False)
            names = [bytes(k).decode() for k, _v in txn.cursor(db=cookies)]
    finally:
        env.close()
    assert len(names) == 4, names  # the direct client's four, none of the daemon's
    assert not [n for n in names if n.startswith(f"{COOKIE_PREFIX}d")], names
    wait_until(
        lambda: not [n for n in os.listdir(root) if n.startswith(COOKIE_PREFIX)],
        "the cookie files to be deleted",
    )
    assert_exact(daemon, [pkg])
