"""The ways a daemon once answered "fresh" for changed content (issue 17), each a class.

- A file named like an excluded directory (``build``, ``dist``, ``x.egg-info``): hashed,
  but its events were dropped by a filter written apart from the file-set rules.
- A project file read through a symlink: its target may change with no event.
- A directory above a package swapped for a symlink: the package's path leads elsewhere.
- A directory the kernel could not watch after start (the watch limit): silent.

Real daemons, real files; every answer is checked against digests recomputed from
scratch, on both client transports.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from conftest import make_tree
from freshd_client import Client
from freshd_client.content.fileset import outside_file_set, walk
from freshd_client.content.project import read_project
from freshd_client.spec import identity

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import (  # noqa: E402
    Daemon,
    Factory,
    assert_exact,
    make_package,
    oracle,
    start_prefixed,
    wait_until,
    write,
)
from test_hostile_fs import _userns_available, never_fresh  # noqa: E402

pytest_plugins = ["daemon_harness"]

NAMES = ["build", "dist", "x.egg-info", "__pycache__", ".git", "m.pyc", "src", "node_modules"]


def test_the_event_filter_drops_only_what_the_walk_leaves_out(tmp_path: Path) -> None:
    """``outside_file_set`` is what the daemon's event filter asks: whatever it says is
    outside must be outside the walk's file set, and everything the walk takes must be
    inside (one definition, issue 17). Names that are directories in one place are files
    in another."""
    pkg = tmp_path / "p"
    files = {"pyproject.toml": '[project]\nname = "p"\n'}
    for a, b in itertools.product(NAMES, NAMES):
        files[f"{a}/{b}"] = "x"  # b a file inside directory a
        files[f"deep/{a}/{b}/f"] = "x"  # both directories, one level down
    make_tree(pkg, files)
    other = tmp_path / "q"  # each name as a file: at the top, and below src/
    make_tree(other, {"pyproject.toml": files["pyproject.toml"]})
    for name in NAMES:
        write(other / name, "x")
        write(other / "lib" / name, "x")
    _check_filter(pkg)
    _check_filter(other)


def _check_filter(pkg: Path) -> None:
    walked = {f.rel for f in walk(str(pkg), read_project(str(pkg))).files}
    every = []
    for dirpath, dirs, names in os.walk(pkg):
        rel_dir = os.path.relpath(dirpath, pkg)
        for name in names:
            every.append((os.path.normpath(os.path.join(rel_dir, name)), False))
        for name in dirs:
            every.append((os.path.normpath(os.path.join(rel_dir, name)), True))
    assert len(every) > 15
    for rel, is_dir in every:
        if outside_file_set(rel, is_dir):
            below = [w for w in walked if w == rel or w.startswith(rel + "/")]
            assert below == [], f"{rel} dropped by the filter, in the file set: {below}"
        elif not is_dir:
            assert rel in walked, f"{rel} is not dropped by the filter nor in the file set"


def test_files_named_like_excluded_directories_are_followed(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    """``printf x >> pkg/build`` then a sync query with the old digest answered fresh."""
    root = tmp_path / "root"
    names = ["build", "dist", "src/notes.egg-info", "src/p/node_modules", "src/p/__pycache__"]
    pkg = make_package(root, "p", dict.fromkeys(names, "one\n"))
    daemon = freshd_factory(root)
    assert_exact(daemon, [pkg])
    for name in names:
        before = oracle(pkg)
        with open(pkg / name, "a") as f:
            f.write("x")
        never_fresh_sync(daemon, pkg, [before.tree])
        assert_exact(daemon, [pkg])


def never_fresh_sync(daemon: Daemon, pkg: Path, digests: list[str]) -> None:
    answer = daemon.fresh([(pkg, d) for d in digests], sync=True, timeout_ms=10_000)
    assert answer["synced"] is True, answer
    assert [r["fresh"] for r in answer["results"]] == [False] * len(digests), answer


def test_a_project_file_read_through_a_symlink_is_never_trusted(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    """A ``pyproject.toml`` linked to a shared file outside the root: its edits reach no
    watch, and they change the file set (``[tool.freshd] exclude``). The package is never
    reported fresh, across restarts too (a seal would vouch for the link alone)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "pyproject.toml").write_text('[project]\nname = "linked"\n')
    root = tmp_path / "root"
    pkg = make_package(root, "linked", {"src/linked/a.py": "a = 1\n", "notes.txt": "n\n"})
    (pkg / "pyproject.toml").unlink()
    (pkg / "pyproject.toml").symlink_to(shared / "pyproject.toml")
    daemon = freshd_factory(root)
    before = oracle(pkg)
    never_fresh(daemon, pkg, [before.tree, before.meta])
    (shared / "pyproject.toml").write_text(
        '[project]\nname = "linked"\n[tool.freshd]\nexclude = ["notes.txt"]\n'
    )
    never_fresh(daemon, pkg, [before.tree, before.meta, oracle(pkg).tree])
    daemon.stop()
    (shared / "pyproject.toml").write_text('[project]\nname = "linked"\n')
    again = freshd_factory(root, db=daemon.db)
    never_fresh(again, pkg, [before.tree, oracle(pkg).tree])
    info = again.packages()[str(pkg)]
    assert info["tree"] == oracle(pkg).tree, info  # hashed through the link, not sealed


def test_a_directory_above_packages_swapped_for_a_symlink(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    """``mv libs libs.old && ln -s alt libs``: the path ``root/libs/p`` now leads to
    ``root/alt/p``, another package. Its old record must go, and both transports must
    answer for the package the path leads to now, with sync and without."""
    root = tmp_path / "root"
    old = make_package(root / "libs", "p", {"src/p/a.py": "old = 1\n"})
    make_package(root / "alt", "p", {"src/p/a.py": "alt = 1\n"})
    daemon = freshd_factory(root)
    assert_exact(daemon, [old, root / "alt/p"])
    old_digest = oracle(old).tree
    (root / "libs").rename(root / "libs.old")
    (root / "libs").symlink_to("alt")
    alt_digest = oracle(root / "alt/p").tree
    wait_until(lambda: str(old) not in daemon.packages(), "the record under the old path gone")
    assert_exact(daemon, [root / "libs.old/p", root / "alt/p"])
    write(root / "alt/p/src/p/a.py", "alt = 2\n")
    alt_digest = oracle(root / "alt/p").tree
    for transport in ("direct", "http"):
        with Client(index_dir=str(daemon.db), socket_path=daemon.socket, transport=transport) as c:
            for consistency in ("sync", "fast"):
                assert c.is_fresh(str(old), old_digest, consistency=consistency) is not True
            assert c.is_fresh(str(old), alt_digest, consistency="sync") is True, transport


def test_directories_beyond_the_watch_limit_after_start(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    """The limit is reached by directories made while the daemon runs: watchdog logs and
    goes on, the kernel's list of watches lacks them (``watchset``). The package must
    never be fresh, health must name the directory, and once the limit allows, the root
    is watched anew and exact (see test_hostile_fs for the user namespace's limit)."""
    if not _userns_available():
        pytest.skip("no user namespaces here (unshare --user): the watch limit cannot be lowered")
    root = tmp_path / "root"
    pkg = make_package(root, "grows")
    limit_file = tmp_path / "limit"
    limit_file.write_text("60\n")
    script = (
        'cat "$0" > /proc/sys/user/max_inotify_watches && '
        '(while sleep 0.1; do cat "$0" > /proc/sys/user/max_inotify_watches; done) & exec "$@"'
    )
    prefix = ["unshare", "--user", "--map-root-user", "sh", "-c", script, str(limit_file)]
    base = tmp_path / "d"
    base.mkdir()
    daemon = start_prefixed(freshd_factory, prefix, base, [root], ["--rescan-seconds", "0.2"])
    assert_exact(daemon, [pkg])
    for i in range(80):
        write(pkg / f"src/grows/d{i}/m.py", f"m = {i}\n")
    never_fresh(daemon, pkg, [oracle(pkg).tree])
    wait_until(lambda: "is not watched" in daemon.log(), "the blind spot named in the log")
    health = daemon.health()
    assert health["status"] == "degraded", health
    assert "watch limit" in str(health["reasons"]), health
    write(pkg / "src/grows/d70/m.py", "edited where no watch is\n")
    never_fresh(daemon, pkg, [oracle(pkg).tree])

    limit_file.write_text("10000\n")
    wait_until(lambda: daemon.health()["status"] == "ready", "watched whole again")
    assert_exact(daemon, [pkg])
    write(pkg / "src/grows/d79/m.py", "edited once watched\n")
    assert_exact(daemon, [pkg])


def test_freshd_checks_stat_cache_never_vouches_for_a_linked_project_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``freshd check`` keeps the stat identities a fresh verdict rests on; a linked
    ``pyproject.toml`` keeps its own identity while its target is edited (its rules
    changing the file set), so such a package is never cached: it is scanned again."""
    from freshd_client.content.scan import scan
    from freshd_client.venvs import verified

    monkeypatch.setattr(identity, "RACY_WINDOW_NS", 0)  # files just written may be cached
    shared = tmp_path / "shared.toml"
    shared.write_text('[project]\nname = "p"\n')
    pkg = make_tree(tmp_path / "p", {"notes.txt": "n\n", "src/p/a.py": "a = 1\n"})
    plain = make_tree(tmp_path / "q", {"pyproject.toml": '[project]\nname = "q"\n'})
    (pkg / "pyproject.toml").symlink_to(shared)
    for path, cached in ((plain, True), (pkg, False)):
        dirs: list[tuple[str, os.stat_result]] = []
        result = scan(str(path), dirs=dirs)
        assert result.tree is not None
        entry = verified.entry_for(result, result.tree, "install", dirs=dirs)
        assert (entry is not None) is cached, path


def test_a_rescan_rereads_rules_a_linked_project_file_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk keeps a known member without matching it again while the rule files are
    as they were; a linked ``pyproject.toml`` is as it was whatever its target says, so
    a file its new rules exclude stayed in the set, and a hard link's other package was
    answered fresh (churn seed 639247675)."""
    from freshd_client.content.oneshot import digest_path
    from freshd_client.content.scan import scan

    monkeypatch.setattr(identity, "RACY_WINDOW_NS", 0)  # files just written may be reused
    shared = tmp_path / "shared.toml"
    shared.write_text('[project]\nname = "p"\n')
    pkg = make_tree(tmp_path / "p", {"notes.txt": "n\n", "src/p/a.py": "a = 1\n"})
    (pkg / "pyproject.toml").symlink_to(shared)
    first = scan(str(pkg))
    assert "notes.txt" in {r.rel for r in first.records}
    shared.write_text('[project]\nname = "p"\n[tool.freshd]\nexclude = ["*.txt"]\n')
    again = scan(str(pkg), {r.rel: r for r in first.records}, previous_tree=first.tree)
    assert "notes.txt" not in {r.rel for r in again.records}
    assert again.tree == digest_path(str(pkg), "tree").tree
