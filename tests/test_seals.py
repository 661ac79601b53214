"""Seals: the start-up crawl skips a package only while nothing its digests read changed.

The oracle is a from-scratch ``digest_path`` of every package after the crawl. The
racy window (2 s) is set to 0 here so that files written by the test can be sealed at
once; instead, before the tree is changed, the test waits until the file system's clock
has moved past every timestamp a seal recorded (a condition with a deadline), which is
what the window guarantees in real use. One test keeps the real window.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from churn_model import Churn
from conftest import Exec, Link, Spec, make_tree, past_every_stamp
from freshd import indexer
from freshd.index import Index
from freshd.indexer import index_roots, make_pool, rescan_job, scan_packages, store
from freshd_client import identity
from freshd_client import schema as sc
from freshd_client.discovery import discover
from freshd_client.oneshot import digest_path

PACKAGE: dict[str, Spec] = {
    "pyproject.toml": (
        '[project]\nname = "sealed"\n[tool.uv]\ncache-keys = '
        '[{file = "pyproject.toml"}, {file = "build/stamp.txt"}, {dir = "src"}]\n'
    ),
    ".gitignore": "*.log\n",
    "notes.log": "ignored\n",
    "build/stamp.txt": "1\n",  # a cache key in a directory the walk does not list
    "src/sealed/__init__.py": "",
    "src/sealed/core.py": "x = 1\n",
    "src/sealed/sub/deep.py": "y = 2\n",
    "src/sealed/sub/.gitignore": ".gitignore\n*.tmp\n",  # excludes itself
    "src/sealed/sub/scratch.tmp": "tmp\n",
    "tool.sh": Exec("#!/bin/sh\n"),
    "link": Link("src/sealed/core.py"),
}


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "RACY_WINDOW_NS", 0)


def _counting_scans(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    scanned: list[str] = []
    real = indexer.scan

    def counted(path: str, *args: object, **kwargs: object) -> object:
        scanned.append(path)
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(indexer, "scan", counted)
    return scanned


def _seal(index: Index, path: str) -> bytes | None:
    return index.read(lambda txn: txn.get(sc.path_key(path), db=index.dbs[sc.DB_SEALS]))


def _check_against_oracle(index: Index) -> None:
    for record in index.packages():
        assert record.state == "clean", record
        assert record.tree == digest_path(record.path, "tree").tree, record.path
        # A meta digest read through a linked pyproject.toml is no daemon's to keep.
        linked = os.path.islink(os.path.join(record.path, "pyproject.toml"))
        want = None if linked else digest_path(record.path, "meta").meta
        assert record.meta == want, record.path


def _edit(rel: str, data: str) -> Callable[[Path], None]:
    return lambda pkg: (pkg / rel).write_text(data)  # in place: the same inode


def _rename(pkg: Path) -> None:
    os.rename(pkg / "src/sealed/core.py", pkg / "src/sealed/core2.py")


def _retarget(pkg: Path) -> None:
    (pkg / "link").unlink()
    (pkg / "link").symlink_to("src/sealed/__init__.py")


def _hard_link(pkg: Path) -> None:
    os.link(pkg / "src/sealed/core.py", pkg.parent.parent / "outside-name.py")


def _touch(pkg: Path) -> None:
    os.utime(pkg / "src/sealed/core.py")


CHANGES: dict[str, Callable[[Path], None] | None] = {
    "nothing": None,
    "same size, other bytes": _edit("src/sealed/core.py", "x = 3\n"),
    "appended": _edit("src/sealed/core.py", "x = 1\nz = 0\n"),
    "file added below": _edit("src/sealed/sub/new.py", "n = 1\n"),
    "ignored file added": _edit("other.log", "more\n"),
    "file removed": lambda pkg: (pkg / "src/sealed/sub/deep.py").unlink(),
    "file renamed": _rename,
    "execute bit": lambda pkg: (pkg / "src/sealed/core.py").chmod(0o755),
    "symlink retargeted": _retarget,
    "self-excluded .gitignore": _edit("src/sealed/sub/.gitignore", ".gitignore\n"),
    "cache key outside the set": _edit("build/stamp.txt", "2\n"),
    "cache key removed": lambda pkg: (pkg / "build/stamp.txt").unlink(),
    "nested package": _edit("src/sealed/sub/pyproject.toml", '[project]\nname = "n"\n'),
    "pyproject edited": _edit("pyproject.toml", '[project]\nname = "other"\n'),
    "hard link elsewhere": _hard_link,
    "touched": _touch,
}


@contextmanager
def _indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, Path, list[str], Index]]:
    """``PACKAGE`` in a root, indexed: the root, the package, the paths ``scan`` is
    called with from now on, the index."""
    root = tmp_path / "root"
    pkg = make_tree(root / "sealed", PACKAGE)
    scanned = _counting_scans(monkeypatch)
    with Index(str(tmp_path / "db")) as index:
        index_roots(index, [str(root)], workers=1)
        assert _seal(index, str(pkg)), "a complete scan of settled files leaves a seal"
        scanned.clear()
        yield root, pkg, scanned, index


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_seal_holds_until_anything_the_digests_read_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    with _indexed(tmp_path, monkeypatch) as (root, pkg, scanned, index):
        before = index.package(str(pkg))
        past_every_stamp(root, tmp_path / "probe")
        mutate = CHANGES[change]
        if mutate is not None:
            mutate(pkg)
        index_roots(index, [str(root)], workers=1)
        assert scanned[:1] == ([] if mutate is None else [str(pkg)])  # then a nested one
        _check_against_oracle(index)
        if mutate is None:
            assert index.package(str(pkg)) == before  # nothing written, not even a generation


@pytest.mark.parametrize(
    "damage", [b"", b"\x01\x00", b"junk" * 9, "truncated", "header", "names"], ids=repr
)
def test_a_damaged_seal_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: bytes | str
) -> None:
    with _indexed(tmp_path, monkeypatch) as (root, pkg, scanned, index):
        seal = _seal(index, str(pkg))
        assert seal is not None
        if damage == "truncated":
            damage = seal[:-1]
        elif damage == "header":
            damage = seal.replace(b'"tree":', b'"tree"=', 1)
        elif damage == "names":
            damage = seal.replace(b"pyproject.toml", b"pyproject\0toml", 1)
        assert isinstance(damage, bytes)
        index.write(
            lambda txn: txn.put(sc.path_key(str(pkg)), damage or b"x", db=index.dbs[sc.DB_SEALS])
        )
        index_roots(index, [str(root)], workers=1)
        assert scanned == [str(pkg)]
        _check_against_oracle(index)


def test_files_written_within_the_racy_window_get_no_seal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(identity, "RACY_WINDOW_NS", sc.RACY_WINDOW_NS)
    pkg = make_tree(tmp_path / "root" / "sealed", PACKAGE)
    with Index(str(tmp_path / "db")) as index:
        index_roots(index, [str(tmp_path / "root")], workers=1)
        assert _seal(index, str(pkg)) is None
        _check_against_oracle(index)


def test_a_meta_digest_reading_git_state_gets_no_seal(tmp_path: Path) -> None:
    spec = dict(PACKAGE)
    spec["pyproject.toml"] = (
        '[project]\nname = "sealed"\n[tool.uv]\ncache-keys = [{git = {commit = true}}]\n'
    )
    pkg = make_tree(tmp_path / "root" / "sealed", spec)
    with Index(str(tmp_path / "db")) as index:
        index_roots(index, [str(tmp_path / "root")], workers=1)
        assert _seal(index, str(pkg)) is None


@pytest.mark.parametrize(
    "keys",
    [
        '[{ env = "HOME" }]',
        '["src/*.py"]',
        '["../outside.txt"]',
        '["/etc/hostname"]',
        '["linked.txt"]',  # a symlink: uv reads its target, which no seal covers
    ],
)
def test_a_meta_digest_reading_more_than_fixed_paths_gets_no_seal(
    tmp_path: Path, keys: str
) -> None:
    spec = dict(PACKAGE)
    spec["pyproject.toml"] = f'[project]\nname = "sealed"\n[tool.uv]\ncache-keys = {keys}\n'
    spec["linked.txt"] = Link("../outside.txt")
    make_tree(tmp_path / "root", {"outside.txt": "x"})
    pkg = make_tree(tmp_path / "root" / "sealed", spec)
    past = time.time() - 60
    for dirpath, _dirs, names in os.walk(tmp_path / "root"):
        for name in names:
            os.utime(os.path.join(dirpath, name), (past, past), follow_symlinks=False)
    with Index(str(tmp_path / "db")) as index:
        index_roots(index, [str(tmp_path / "root")], workers=1)
        assert _seal(index, str(pkg)) is None
    # the same package with a plain key inside it is sealed (the test can tell)
    spec["pyproject.toml"] = '[project]\nname = "sealed"\n[tool.uv]\ncache-keys = ["a.txt"]\n'
    other = make_tree(tmp_path / "root2" / "sealed", spec)
    for dirpath, _dirs, names in os.walk(tmp_path / "root2"):
        for name in names:
            os.utime(os.path.join(dirpath, name), (past, past), follow_symlinks=False)
    with Index(str(tmp_path / "db2")) as index:
        index_roots(index, [str(tmp_path / "root2")], workers=1)
        assert _seal(index, str(other)) is not None


def test_rescans_after_events_never_trust_a_seal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _indexed(tmp_path, monkeypatch) as (root, pkg, scanned, index):
        assert [o.error for o in scan_packages(index, [str(pkg)], None)] == [None]
        assert scanned == [str(pkg)]
        # A rehash of a few files (an edit while the daemon runs) drops the seal.
        (pkg / "src/sealed/core.py").write_text("x = 4\n")
        outcome = rescan_job(index, str(pkg), {"src/sealed/core.py"})
        assert outcome is not None and outcome.partial
        by_path = {p.path: p for p in discover(str(root)).packages}
        index.write(lambda txn: store(index, txn, by_path, [outcome]))
        assert _seal(index, str(pkg)) is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_restarts_after_offline_churn_match_the_oracle(tmp_path: Path, seed: int) -> None:
    """Random changes while no daemon runs, between crawls by forked workers (which
    inherit the racy window of 0): every crawl's digests are the oracle's."""
    churn = Churn(seed, tmp_path / "base")
    rng = random.Random(seed)  # noqa: S311 (reproducible by seed, not secret)
    pool = make_pool(2, fork=True)
    try:
        with Index(str(tmp_path / "db")) as index:
            for _round in range(4):
                index_roots(index, [str(churn.root)], workers=2, pool=pool)
                with churn.failure(f"crawl {_round}"):
                    _check_against_oracle(index)
                    assert any(_seal(index, str(p)) for p in churn.packages())
                past_every_stamp(churn.root.parent, tmp_path / "probe")
                for _ in range(rng.randint(1, 6)):
                    churn.log.append(churn.step())
    finally:
        pool.shutdown()
