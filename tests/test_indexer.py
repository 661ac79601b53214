"""The indexer's crawl: packages found through each package's own walk, jobs for the pool.

The oracle for what is found is ``discover()``, the whole-tree walk the indexer used to
run before scanning: the indexer stops discovery at the first package down each path
and learns of the packages inside one from that package's scan.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from conftest import Link, Spec, make_tree
from freshd.index import Index
from freshd.indexer import _jobs, index_roots, make_pool
from freshd_client import identity
from freshd_client.discovery import discover
from freshd_client.oneshot import digest_path
from test_discovery import MONOREPO

HIDDEN: dict[str, Spec] = {
    # what a package's walk does not enter, and discovery does
    "outer/pyproject.toml": '[project]\nname = "outer"\n[tool.freshd]\nexclude = ["skipped/"]\n',
    "outer/.gitignore": "vendor/\n",
    "outer/skipped/inner/pyproject.toml": '[project]\nname = "inner"\n',
    "outer/vendor/lib/setup.py": "",
    "outer/vendor/lib/deeper/setup.cfg": "[metadata]\nname = deeper\n",
    "outer/vendor/.venv/pyvenv.cfg": "",
    "outer/vendor/.venv/site/pyproject.toml": "",
    "outer/vendor/env2/pyvenv.cfg": "",
    "outer/vendor/env2/pyproject.toml": "",
    "outer/build/generated/pyproject.toml": '[project]\nname = "generated"\n',
    "outer/.freshd-cookie-odd/cookie/pyproject.toml": "",
    "outer/src/a/pyproject.toml": '[project]\nname = "a"\n',
    "outer/src/a/b/pyproject.toml": '[project]\nname = "b"\n',
    "outer/src/link": Link("a"),
    # what discovery prunes, even where a walk enters for an include
    "outer/__pycache__/cached/pyproject.toml": "",
    "outer/x.egg-info/pyproject.toml": "",
    "inc/pyproject.toml": '[project]\nname = "inc"\n[tool.freshd]\ninclude = ["keep.pyc"]\n',
    "inc/.gitignore": "ignored/\n",
    "inc/ignored/p/pyproject.toml": '[project]\nname = "p"\n',
    "inc/__pycache__/deep/pyproject.toml": "",
    "inc/node_modules/dep/setup.py": "",
    # a package whose scan fails before its walk
    "broken/pyproject.toml": "[project\n",
    "broken/sub/pyproject.toml": '[project]\nname = "sub"\n',
    "broken/sub/inner/setup.py": "",
}


def _found(paths: list[tuple[str, str | None, str, str | None]]) -> list[tuple[str, ...]]:
    return sorted((p, str(name), root, str(ws)) for p, name, root, ws in paths)


def _discovered(roots: list[str]) -> list[tuple[str, str | None, str, str | None]]:
    return [(p.path, p.name, p.root, p.workspace) for r in roots for p in discover(r).packages]


def _indexed(tmp_path: Path, roots: list[str], workers: int) -> list[tuple[str, ...]]:
    with Index(str(tmp_path / "db")) as index:
        summary = index_roots(index, roots, workers=workers)
        found = [(p.path, p.name, p.root, p.workspace) for p in summary.found]
        by_path = {p.path: p for p in summary.found}  # the last root's claim wins
        records = {r.path: r for r in index.packages()}
    assert summary.packages == len(by_path) == len(records)
    for path, pkg in by_path.items():
        record = records[path]
        assert (record.root, record.workspace) == (pkg.root, pkg.workspace), path
        if record.state == "clean":
            assert record.tree == digest_path(path, "tree").tree
    return _found(found)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("tree", [MONOREPO, HIDDEN], ids=["monorepo", "hidden"])
def test_the_crawl_finds_what_discovery_finds(
    tmp_path: Path, tree: dict[str, Spec], workers: int
) -> None:
    root = str(make_tree(tmp_path / "root", tree).resolve())
    assert _indexed(tmp_path, [root], workers) == _found(_discovered([root]))


def test_a_later_root_claims_what_it_finds(tmp_path: Path) -> None:
    """Roots inside one another: each package belongs to the last root that finds it,
    also where the inner root lies inside a package of the outer one."""
    top = make_tree(tmp_path / "root", HIDDEN).resolve()
    roots = [str(top / "outer/vendor"), str(top), str(top / "outer/src")]
    assert _indexed(tmp_path, roots, 1) == _found(_discovered(roots))


_NAMES = ["a", "b", "src", "lib", "build", "dist", "vendor", "__pycache__", ".tox", "x.egg-info"]


def _random_tree(rng: random.Random, depth: int = 0, prefix: str = "") -> dict[str, Spec]:
    tree: dict[str, Spec] = {}
    if rng.random() < 0.5:
        tree[prefix + rng.choice(["pyproject.toml", "setup.py", "setup.cfg"])] = ""
    if rng.random() < 0.1:
        tree[prefix + "pyvenv.cfg"] = ""
    if rng.random() < 0.3:
        tree[prefix + ".gitignore"] = "\n".join(rng.sample(_NAMES, 2)) + "/\n"
    tree[prefix + "m.py"] = "x = 1\n"
    if depth < 4:
        for name in rng.sample(_NAMES, rng.randint(0, 3)):
            tree.update(_random_tree(rng, depth + 1, f"{prefix}{name}/"))
    return tree


@pytest.mark.parametrize("seed", range(40))
def test_the_crawl_finds_what_discovery_finds_in_random_trees(tmp_path: Path, seed: int) -> None:
    tree = _random_tree(random.Random(seed))  # noqa: S311 (reproducible by seed, not secret)
    root = str(make_tree(tmp_path / "root", tree).resolve())
    assert _indexed(tmp_path, [root], 1) == _found(_discovered([root]))


def test_jobs_take_a_shrinking_share_of_what_is_left() -> None:
    paths = [f"p{i}" for i in range(300)]
    jobs = _jobs(paths, {}, 8)
    assert [p for job in jobs for p in job] == paths  # all of them, in order
    assert len(jobs) < 40
    assert [len(j) for j in jobs] == sorted((len(j) for j in jobs), reverse=True)
    assert len(jobs[-1]) == 1
    big = _jobs(paths, {"p0": 30_000} | dict.fromkeys(paths[1:], 100), 8)
    assert big[0] == ["p0"]  # a package bigger than a share is a job of its own
    assert _jobs([], {}, 8) == []


def test_a_crawl_with_nothing_to_find(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    calls: list[tuple[int, int]] = []
    with Index(str(tmp_path / "db")) as index:
        summary = index_roots(
            index, [str(tmp_path / "empty")], workers=2, progress=lambda *c: calls.append(c)
        )
    assert (summary.packages, summary.found, summary.errors) == (0, [], [])
    assert calls == [(0, 0)]  # the daemon's start-up waits for the first call


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_starts_at_zero_once_and_counts_every_package(
    tmp_path: Path, workers: int
) -> None:
    root = str(make_tree(tmp_path / "root", MONOREPO).resolve())
    calls: list[tuple[int, int]] = []
    with Index(str(tmp_path / "db")) as index:
        summary = index_roots(index, [root], workers=workers, progress=lambda *c: calls.append(c))
    assert [done for done, _total in calls] == list(range(summary.packages + 1))
    assert calls[-1] == (summary.packages, summary.packages) and summary.packages > 3


def _listed(summary_dirs: dict[str, list[tuple[str, int, int]]]) -> dict[str, set[str]]:
    """The relative directories each package's scan says it listed, checked to carry the
    identity the directory has."""
    listed: dict[str, set[str]] = {}
    for package, dirs in summary_dirs.items():
        for rel, dev, ino in dirs:
            st = os.stat(os.path.join(package, rel) if rel else package)
            assert (st.st_dev, st.st_ino) == (dev, ino), (package, rel)
        listed[package] = {rel for rel, _dev, _ino in dirs}
    return listed


@pytest.mark.parametrize("seed", range(20))
def test_the_crawl_names_every_directory_a_scan_listed(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon checks each directory a scan listed against the kernel's watches
    (``watchset``): the crawl must name them all, each package's own, from a walk and
    from a seal alike (the warm crawl)."""
    monkeypatch.setattr(identity, "RACY_WINDOW_NS", 0)  # files just written may be sealed
    tree = _random_tree(random.Random(seed))  # noqa: S311 (reproducible by seed, not secret)
    root = str(make_tree(tmp_path / "root", tree).resolve())
    with Index(str(tmp_path / "db")) as index:
        cold = index_roots(index, [root], workers=1)
        warm = index_roots(index, [root], workers=1)
        records = {p: index.file_records(p) for p in cold.dirs}
    listed = _listed(cold.dirs)
    assert set(listed) == {p.path for p in discover(root).packages}
    for package, rels in listed.items():
        # Every directory holding a member was listed, and the package itself.
        assert {r.rpartition("/")[0] for r in records[package]} | {""} <= rels, package
    sealed = _listed(warm.dirs)  # a seal may name more: a cache key's directory (``src``)
    assert sealed.keys() == listed.keys()
    assert all(sealed[p] >= listed[p] for p in listed)
    assert warm.reused == warm.files  # the warm crawl took its seals


def test_a_forked_pool_scans_as_a_spawned_one(tmp_path: Path) -> None:
    """The daemon forks its first pool before it holds anything a child must not
    inherit; its workers give the digests of a from-scratch recomputation."""
    root = str(make_tree(tmp_path / "root", MONOREPO).resolve())
    pool = make_pool(2, fork=True)
    try:
        with Index(str(tmp_path / "db")) as index:
            summary = index_roots(index, [root], workers=2, pool=pool)
            records = {r.path: r for r in index.packages()}
    finally:
        pool.shutdown()
    assert summary.packages == len(discover(root).packages) > 1
    for path, record in records.items():
        if record.state == "clean":
            assert record.tree == digest_path(path, "tree").tree, path
    assert {r.state for r in records.values()} <= {"clean", "error"}
    assert any(r.state == "clean" for r in records.values())


@pytest.mark.parametrize(
    "keys",
    [
        '[{ env = "HOME" }, "a.txt"]',  # the value is the asking process's
        '["*.txt"]',  # a glob selects anywhere, also where events are filtered out
        '["../outside.txt"]',  # out of the package
        '["linked.txt"]',  # read through a symlink: its target is not watched
    ],
)
def test_the_daemon_keeps_no_meta_digest_it_cannot_keep_current(tmp_path: Path, keys: str) -> None:
    """What the watcher of a package cannot see must not make a daemon answer fresh
    for its meta digest: it answers null (unknown) and the client computes it."""
    text = f'[project]\nname = "e"\n[tool.uv]\ncache-keys = {keys}\n'
    make_tree(tmp_path / "root", {"outside.txt": "o"})
    files: dict[str, Spec] = {"pyproject.toml": text, "a.txt": "a"}
    files["linked.txt"] = Link("a.txt")
    make_tree(tmp_path / "root" / "e", files)
    plain = '[project]\nname = "p"\n[tool.uv]\ncache-keys = ["a.txt", { git = true }]\n'
    make_tree(tmp_path / "root" / "plain", {"pyproject.toml": plain, "a.txt": "a"})
    with Index(str(tmp_path / "db")) as index:
        index_roots(index, [str(tmp_path / "root")], workers=1)
        records = {os.path.basename(r.path): r for r in index.packages()}
    assert records["e"].meta is None and records["e"].tree is not None
    assert records["plain"].meta is not None
    assert digest_path(str(tmp_path / "root" / "e"), "meta").meta is not None  # one-shot
