"""``freshd serve`` for real: a subprocess, real files, real events (issue 3, "Tests").

Every scenario ends with ``assert_exact``: a ``sync`` query and the whole
``/v1/packages`` list against digests recomputed from scratch by the one-shot scanner.
Conditions are waited for with deadlines (``wait_until``), never with fixed sleeps.

Most file scenarios share one module-scoped daemon, each on its own copy of a small
monorepo under the daemon's root; tests that stop, kill or reconfigure a daemon start
their own.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api_cases import BAD_REQUESTS, fresh_body
from conftest import Exec, Link, make_tree

# Before the import, so that its asserts are rewritten and ``pytest_plugins`` can load
# its report hook without a warning.
pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import (  # noqa: E402
    DEADLINE,
    FRESHD,
    Daemon,
    Factory,
    UnixConnection,
    assert_exact,
    atomic_write,
    http_request,
    make_package,
    oracle,
    tcp_address,
    wait_until,
    write,
)

pytest_plugins = ["daemon_harness"]

MARKERS = ("pyproject.toml", "setup.py", "setup.cfg")
NO_DIGEST = "b3t2:" + "0" * 64


CLI_PYPROJECT = """[project]
name = "cli"
version = "0.1.0"

[tool.uv]
cache-keys = [{ file = "pyproject.toml" }, { file = "src/cli/m0.py" }, { file = "build/stamp" }]
"""


def make_mono(root: Path) -> Path:
    """A small monorepo: ``core`` (ignores, a venv, an executable, a symlink, a would-be
    nested package), ``web``, and ``cli`` (uv cache keys, one of them in ``build/``)."""
    make_package(
        root,
        "core",
        {
            ".gitignore": "*.log\nignored_dir/\n",
            "debug.log": "ignored\n",
            "ignored_dir/old.txt": "ignored\n",
            "env/pyvenv.cfg": "home = /usr/bin\n",
            "env/lib/site.py": "in a venv: never part of a package\n",
            "README.md": "# core\n",
            "src/core/__init__.py": "",
            **{f"src/core/m{i}.py": f"x = {i}\n" for i in range(3)},
            "src/core/data/a.txt": "a\n",
            "src/core/data/b.txt": "b\n",
            "bin/run": Exec("#!/bin/sh\necho run\n"),
            "link.py": Link("src/core/m0.py"),
            "plugins/plug/plug.py": "plugged = True\n",
        },
    )
    make_package(root, "web")
    make_package(
        root,
        "cli",
        {"pyproject.toml": CLI_PYPROJECT, "src/cli/m0.py": "x = 0\n", "build/stamp": "1\n"},
    )
    return root


def find_packages(root: Path) -> list[Path]:
    """Directories below ``root`` holding a project file (our trees have no venvs or VCS)."""
    found = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
        if Path(dirpath) != root and any(m in names for m in MARKERS):
            found.append(Path(dirpath))
    return sorted(found)


def wait_converged(daemon: Daemon, root: Path) -> None:
    """Without any sync query, the index reaches the oracle's digests (the event path)."""
    expected = {str(p): oracle(p).tree for p in find_packages(root)}
    prefix = str(root) + "/"

    def converged() -> bool:
        listed = {p: i for p, i in daemon.packages().items() if p.startswith(prefix)}
        return {p: i["tree"] for p, i in listed.items() if i["state"] == "clean"} == expected

    wait_until(converged, f"the packages under {root} to converge without a sync query")


def wait_converged_digest(daemon: Daemon, path: Path) -> str:
    """Wait (fast reads) until the package at ``path`` is clean with the oracle's digest."""
    want = oracle(path).tree
    daemon.wait_package(path, lambda i: i["state"] == "clean" and i["tree"] == want, "clean")
    return want


# -- file scenarios, on the shared daemon -------------------------------------------------


Scenario = Callable[[Path, Path], set[str]]
"""Mutates the monorepo at its first argument (the second is a directory outside every
root); returns the packages (relative paths) whose tree digest must change."""


def _edit(root: Path, _outside: Path) -> set[str]:
    write(root / "core/src/core/m0.py", "x = 'edited'\n")
    return {"core"}


def _atomic_save(root: Path, _outside: Path) -> set[str]:
    atomic_write(root / "core/src/core/m1.py", "x = 'saved atomically'\n")
    return {"core"}


def _create_file(root: Path, _outside: Path) -> set[str]:
    write(root / "web/src/web/new.py", "new = 1\n")
    return {"web"}


def _delete_file(root: Path, _outside: Path) -> set[str]:
    (root / "core/src/core/m2.py").unlink()
    return {"core"}


def _rename_file(root: Path, _outside: Path) -> set[str]:
    os.rename(root / "core/src/core/m0.py", root / "core/src/core/renamed.py")
    return {"core"}


def _create_directory(root: Path, _outside: Path) -> set[str]:
    # Files land at once, before the daemon can have added a watch for the new directories.
    deep = root / "core/src/core/sub/deeper/deepest"
    deep.mkdir(parents=True)
    for i in range(20):
        write(deep / f"f{i}.py", f"f = {i}\n")
        write(deep.parent / f"g{i}.py", f"g = {i}\n")
    return {"core"}


def _rename_directory(root: Path, _outside: Path) -> set[str]:
    os.rename(root / "core/src/core", root / "core/src/core_renamed")
    return {"core"}


def _delete_directory(root: Path, _outside: Path) -> set[str]:
    shutil.rmtree(root / "core/src/core/data")
    return {"core"}


def _rename_then_edit_inside(root: Path, _outside: Path) -> set[str]:
    # The watch of the renamed directory must follow it to its new name.
    os.rename(root / "core/src/core/data", root / "core/src/core/data2")
    write(root / "core/src/core/data2/a.txt", "edited after the rename\n")
    return {"core"}


def _move_file_between_packages(root: Path, _outside: Path) -> set[str]:
    os.rename(root / "core/src/core/m0.py", root / "web/src/web/from_core.py")
    return {"core", "web"}


def _move_directory_between_packages(root: Path, _outside: Path) -> set[str]:
    os.rename(root / "core/src/core/data", root / "web/src/web/data")
    return {"core", "web"}


def _move_in_and_out_of_the_root(root: Path, outside: Path) -> set[str]:
    incoming = outside / f"incoming-{root.name}"
    incoming.mkdir(parents=True)
    write(incoming / "in.py", "came from outside\n")
    os.rename(incoming / "in.py", root / "core/src/core/in.py")
    os.rename(root / "web/src/web/m0.py", incoming / "left.py")
    os.rename(root / "cli/src", incoming / "src")
    return {"core", "web", "cli"}


def _create_package(root: Path, _outside: Path) -> set[str]:
    make_package(root, "fresh_pkg")
    return set()


def _create_package_project_file_last(root: Path, _outside: Path) -> set[str]:
    late = root / "libs/late"
    make_tree(late, {"src/late/a.py": "a = 1\n", "README.md": "late\n"})
    write(late / "pyproject.toml", '[project]\nname = "late"\nversion = "1"\n')
    return set()


def _create_nested_package(root: Path, _outside: Path) -> set[str]:
    # core/plugins/plug becomes a package of its own: its files leave core's file set.
    write(root / "core/plugins/plug/pyproject.toml", '[project]\nname = "plug"\nversion = "1"\n')
    return {"core"}


def _delete_package(root: Path, _outside: Path) -> set[str]:
    shutil.rmtree(root / "web")
    return set()


def _delete_project_file(root: Path, _outside: Path) -> set[str]:
    (root / "web/pyproject.toml").unlink()  # web is no longer a package
    return set()


def _recreate_package(root: Path, _outside: Path) -> set[str]:
    shutil.rmtree(root / "web")
    make_package(root, "web", {"src/web/only.py": "recreated = True\n"})
    return {"web"}


def _swap_package_directory(root: Path, _outside: Path) -> set[str]:
    # A deploy or checkout tool: build the new tree beside the old one, rename it over.
    make_package(root, "web_next", {"src/web/m0.py": "next = 1\n"})
    os.rename(root / "web", root / "web_old")
    os.rename(root / "web_next", root / "web")
    shutil.rmtree(root / "web_old")
    return {"web"}


def _gitignore_ignores_a_file(root: Path, _outside: Path) -> set[str]:
    with open(root / "core/.gitignore", "a") as f:
        f.write("src/core/m1.py\n")
    return {"core"}


def _gitignore_in_a_subdirectory(root: Path, _outside: Path) -> set[str]:
    write(root / "core/src/core/.gitignore", "data/\n")
    return {"core"}


def _gitignore_unignores_a_file(root: Path, _outside: Path) -> set[str]:
    write(root / "core/.gitignore", "# nothing ignored any more\n")
    return {"core"}


def _gitignore_deleted(root: Path, _outside: Path) -> set[str]:
    (root / "core/.gitignore").unlink()
    return {"core"}


def _chmod_executable(root: Path, _outside: Path) -> set[str]:
    os.chmod(root / "core/src/core/m0.py", 0o755)  # noqa: S103
    return {"core"}


def _chmod_not_executable(root: Path, _outside: Path) -> set[str]:
    os.chmod(root / "core/bin/run", 0o644)
    return {"core"}


def _symlink_created(root: Path, _outside: Path) -> set[str]:
    os.symlink("src/core/m1.py", root / "core/alias.py")
    return {"core"}


def _symlink_retargeted(root: Path, _outside: Path) -> set[str]:
    os.symlink("src/core/m2.py", root / "core/.link.tmp")
    os.replace(root / "core/.link.tmp", root / "core/link.py")
    return {"core"}


def _pyproject_edited(root: Path, _outside: Path) -> set[str]:
    write(root / "cli/pyproject.toml", '[project]\nname = "cli"\nversion = "2.0"\n')
    return {"cli"}


def _file_becomes_directory(root: Path, _outside: Path) -> set[str]:
    (root / "core/src/core/m2.py").unlink()
    write(root / "core/src/core/m2.py/inner.py", "inner = 1\n")
    return {"core"}


def _file_replaced_by_symlink(root: Path, _outside: Path) -> set[str]:
    os.symlink("m1.py", root / "core/src/core/.m0.tmp")
    os.replace(root / "core/src/core/.m0.tmp", root / "core/src/core/m0.py")
    return {"core"}


def _symlink_to_directory(root: Path, _outside: Path) -> set[str]:
    os.symlink("src/core", root / "core/srclink")  # recorded as a link, never followed
    return {"core"}


def _rename_over_existing(root: Path, _outside: Path) -> set[str]:
    os.replace(root / "core/src/core/m0.py", root / "core/src/core/m1.py")
    return {"core"}


def _hard_link_created(root: Path, _outside: Path) -> set[str]:
    os.link(root / "core/src/core/m0.py", root / "core/src/core/m0_again.py")
    return {"core"}


def _new_file_in_ignored_directory(root: Path, _outside: Path) -> set[str]:
    write(root / "core/ignored_dir/new.txt", "still ignored\n")
    write(root / "core/ignored_dir/old.txt", "edited, still ignored\n")
    return set()


def _new_file_in_a_venv(root: Path, _outside: Path) -> set[str]:
    write(root / "core/env/lib/new.py", "a venv is never part of a package\n")
    write(root / "core/env/lib/site.py", "edited\n")
    return set()


def _freshd_exclude_added(root: Path, _outside: Path) -> set[str]:
    with open(root / "core/pyproject.toml", "a") as f:
        f.write('\n[tool.freshd]\nexclude = ["README.md"]\n')
    return {"core"}


def _cache_key_file_edited(root: Path, _outside: Path) -> set[str]:
    write(root / "cli/src/cli/m0.py", "x = 'a cache key: tree and meta change'\n")
    return {"cli"}


def _cache_key_in_build_edited(root: Path, _outside: Path) -> set[str]:
    write(root / "cli/build/stamp", "2\n")  # outside the file set: only meta changes
    return set()


def _only_ignored_files(root: Path, _outside: Path) -> set[str]:
    write(root / "core/src/core/__pycache__/m0.cpython-311.pyc", b"\x00bytecode")
    write(root / "core/trace.log", "ignored by *.log\n")
    write(root / "core/build/lib/core.py", "build output\n")
    return set()


SCENARIOS: dict[str, Scenario] = {
    "edit": _edit,
    "atomic-save": _atomic_save,
    "create-file": _create_file,
    "delete-file": _delete_file,
    "rename-file": _rename_file,
    "create-directory": _create_directory,
    "rename-directory": _rename_directory,
    "delete-directory": _delete_directory,
    "rename-then-edit-inside": _rename_then_edit_inside,
    "move-file-between-packages": _move_file_between_packages,
    "move-directory-between-packages": _move_directory_between_packages,
    "move-in-and-out-of-the-root": _move_in_and_out_of_the_root,
    "create-package": _create_package,
    "create-package-project-file-last": _create_package_project_file_last,
    "create-nested-package": _create_nested_package,
    "delete-package": _delete_package,
    "delete-project-file": _delete_project_file,
    "recreate-package": _recreate_package,
    "swap-package-directory": _swap_package_directory,
    "gitignore-ignores-a-file": _gitignore_ignores_a_file,
    "gitignore-in-a-subdirectory": _gitignore_in_a_subdirectory,
    "gitignore-unignores-a-file": _gitignore_unignores_a_file,
    "gitignore-deleted": _gitignore_deleted,
    "chmod-executable": _chmod_executable,
    "chmod-not-executable": _chmod_not_executable,
    "symlink-created": _symlink_created,
    "symlink-retargeted": _symlink_retargeted,
    "pyproject-edited": _pyproject_edited,
    "file-becomes-directory": _file_becomes_directory,
    "file-replaced-by-symlink": _file_replaced_by_symlink,
    "symlink-to-directory": _symlink_to_directory,
    "rename-over-existing": _rename_over_existing,
    "hard-link-created": _hard_link_created,
    "new-file-in-ignored-directory": _new_file_in_ignored_directory,
    "new-file-in-a-venv": _new_file_in_a_venv,
    "freshd-exclude-added": _freshd_exclude_added,
    "cache-key-file-edited": _cache_key_file_edited,
    "cache-key-in-build-edited": _cache_key_in_build_edited,
    "only-ignored-files": _only_ignored_files,
}
OWN_TREES = (
    "sync",
    "probe",
    "burst",
    "events",
    "metrics",
    "lookup",
    "hardlink",
    "linked-rules",
)


@dataclass
class Shared:
    """The module's daemon: one root holding a monorepo per scenario and per test."""

    daemon: Daemon
    root: Path
    outside: Path

    def tree(self, name: str) -> Path:
        return self.root / name


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    base = tmp_path_factory.mktemp("shared")
    root = base / "root"
    for name in (*SCENARIOS, *OWN_TREES):
        make_mono(root / name)
    factory = Factory(base / "freshd")
    try:
        yield Shared(factory(root), root, base / "outside")
    finally:
        factory.close()


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_change_is_reflected_exactly(shared: Shared, name: str) -> None:
    tree = shared.tree(name)
    before = {p: oracle(p) for p in find_packages(tree)}
    assert_exact(shared.daemon, before, roots=[tree])

    changed = SCENARIOS[name](tree, shared.outside)

    after = find_packages(tree)
    moved = {p for p in after if p in before and oracle(p).tree != before[p].tree}
    assert {str(p.relative_to(tree)) for p in moved} == changed, "the scenario itself is wrong"
    wait_converged(shared.daemon, tree)
    assert_exact(shared.daemon, after, roots=[tree])
    for path, old in before.items():  # an old digest is never fresh for changed content
        if path in after and oracle(path).tree != old.tree:
            result = shared.daemon.fresh([(path, old.tree)], sync=True)["results"][0]
            assert result["fresh"] is False, result


def test_sync_reflects_a_write_made_just_before(shared: Shared) -> None:
    core = shared.tree("sync") / "core"
    src = core / "src/core"
    previous = oracle(core).tree
    for i in range(50):
        step = i % 4
        if step == 0:
            write(src / "m0.py", f"x = {100 + i}\n")  # in place, the same size every time
        elif step == 1:
            atomic_write(src / "m1.py", f"y = {i}\n")
        elif step == 2:
            write(src / f"n{i}.py", f"n = {i}\n")
        else:
            (src / f"n{i - 1}.py").unlink()
        current = oracle(core).tree
        answer = shared.daemon.fresh([(core, current), (core, previous)], sync=True)
        assert answer["synced"] is True, answer
        fresh = [r["fresh"] for r in answer["results"]]
        assert fresh == [True, False], f"write {i}: {answer}"
        previous = current
    assert_exact(shared.daemon, find_packages(shared.tree("sync")), roots=[shared.tree("sync")])


def test_a_hard_linked_file_written_through_another_name(shared: Shared, tmp_path: Path) -> None:
    """A file of a package can be hard-linked from another package or from outside every
    root (``cp -al``, link farms): writing through the other name changes the content
    too, and the old digest must stop being fresh.

    inotify reports a write only under the name written through. A name in another
    package is followed (an event on either name rehashes both); a name outside every
    root is not watchable, so the package is never fresh while it has one (issue 5).
    """
    tree = shared.tree("hardlink")
    core, web = tree / "core", tree / "web"
    os.link(web / "src/web/m0.py", core / "src/core/linked_from_web.py")
    assert_exact(shared.daemon, find_packages(tree), roots=[tree])
    for other in (web / "src/web/m0.py", core / "src/core/linked_from_web.py"):
        before = [(core, oracle(core).tree), (web, oracle(web).tree)]
        write(other, f"v = 'written through {other.name}'\n")  # in place: the inode is shared
        results = shared.daemon.fresh(before, sync=True)["results"]
        assert [r["fresh"] for r in results] == [False, False], f"after {other}: {results}"
        assert_exact(shared.daemon, find_packages(tree), roots=[tree])

    outside = tmp_path / "outside.py"
    write(outside, "v = 1\n")
    linked = core / "src/core/linked_from_outside.py"
    os.link(outside, linked)
    with_link = oracle(core).tree
    (result,) = shared.daemon.fresh([(core, with_link)], sync=True)["results"]
    assert (result["fresh"], result["state"]) == (None, "dirty"), result
    write(outside, "v = 'written outside every root'\n")  # no event in any watched directory
    assert oracle(core).tree != with_link
    for sync in (False, True):
        (result,) = shared.daemon.fresh([(core, with_link)], sync=sync)["results"]
        assert result["fresh"] is None, f"stale content answered fresh (sync={sync}): {result}"
    linked.unlink()
    assert_exact(shared.daemon, find_packages(tree), roots=[tree])


def test_a_hard_linked_gitignore_written_through_another_name(shared: Shared) -> None:
    """A ``.gitignore`` (or project file) written through another name changes which
    files the package holds: the event on that name must rewalk the package, not just
    rehash the file (churn seed 5014: clean with 14 files where there were 21)."""
    tree = shared.tree("linked-rules")
    core = tree / "core"
    os.link(core / ".gitignore", core / "src/core/rules_again")
    assert_exact(shared.daemon, find_packages(tree), roots=[tree])
    before = oracle(core)
    write(core / "src/core/rules_again", "ignored_dir/\n")  # *.log no longer ignored
    assert oracle(core).tree != before.tree
    wait_converged(shared.daemon, tree)  # the event path alone, then a sync answer
    assert_exact(shared.daemon, find_packages(tree), roots=[tree])
    (result,) = shared.daemon.fresh([(core, before.tree)], sync=True)["results"]
    assert result["fresh"] is False, result


def _probe(daemon: Daemon, path: Path, digests: list[str]) -> list[dict[str, Any]]:
    """One fast query for ``digests``; every non-clean answer must be "unknown"."""
    results: list[dict[str, Any]] = daemon.fresh([(path, d) for d in digests], sync=False)[
        "results"
    ]
    for result in results:
        if result["state"] != "clean":
            assert result["fresh"] is None, f"a {result['state']} package answered: {result}"
    return results


def test_an_old_digest_is_never_fresh_once_the_change_is_seen(shared: Shared) -> None:
    """The invariant probe, one write at a time.

    Each write changes one byte in place: same size, same inode (where file timestamps
    are coarse, often the same mtime tick too: the racy-timestamp case). After each
    write, once a fast answer shows the package dirty or with another digest, no later
    answer may say fresh for the digest of the content before the write.
    """
    core = shared.tree("probe") / "core"
    target = core / "src/core/m0.py"
    write(target, "x = 'A'\n")
    old = wait_converged_digest(shared.daemon, core)
    dirty_seen = 0
    fd = os.open(target, os.O_WRONLY)
    try:
        for i in range(1, 51):
            os.pwrite(fd, bytes([ord("A") + i % 26]), 5)
            new = oracle(core).tree
            assert new != old
            seen_change = False
            deadline = time.monotonic() + DEADLINE
            while True:
                old_answer, new_answer = _probe(shared.daemon, core, [old, new])
                if seen_change:
                    assert old_answer["fresh"] is not True, (
                        f"write {i}: fresh for the old content after the change was seen: "
                        f"{old_answer}"
                    )
                if old_answer["state"] == "dirty":
                    dirty_seen += 1
                if old_answer["state"] == "dirty" or old_answer["digest"] not in (None, old):
                    seen_change = True
                if new_answer["fresh"] is True:
                    break
                assert time.monotonic() < deadline, f"write {i} was never seen: {new_answer}"
            old = new
    finally:
        os.close(fd)
    assert dirty_seen > 0, "no answer ever showed the package dirty: the probe proved nothing"
    assert_exact(shared.daemon, find_packages(shared.tree("probe")), roots=[shared.tree("probe")])


def test_a_burst_of_edits_never_goes_back_in_time(shared: Shared, tmp_path: Path) -> None:
    """The invariant probe during a burst: single-byte writes in place, as fast as possible.

    Clean answers may lag behind the writes (``fast`` is one processing delay old) but
    must always name a digest of some content the file really had, never one older than
    a digest already reported, and never "fresh" for a package in any other state.
    """
    core = shared.tree("burst") / "core"
    target = core / "src/core/m0.py"
    alphabet = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    write(target, b"x = '" + alphabet[:1] + b"'\n")
    # The digests of every version, from a copy (a digest does not depend on location).
    copy = shutil.copytree(core, tmp_path / "copy", symlinks=True)
    versions: dict[str, int] = {}
    for n, char in enumerate(alphabet):
        write(copy / "src/core/m0.py", b"x = '" + bytes([char]) + b"'\n")
        versions[oracle(copy).tree] = n
    assert len(versions) == len(alphabet)
    wait_converged_digest(shared.daemon, core)

    answered = threading.Condition()
    answers = 0

    def burst() -> None:
        """One single-byte write (a reader never sees half of it) per answer or so."""
        fd = os.open(target, os.O_WRONLY)
        try:
            for char in alphabet[1:]:
                os.pwrite(fd, bytes([char]), 5)
                with answered:
                    seen = answers
                    answered.wait_for(lambda seen=seen: answers > seen, timeout=DEADLINE)
        finally:
            os.close(fd)

    writer = threading.Thread(target=burst)
    last = 0
    writer.start()
    try:
        while writer.is_alive() or answers < 20:
            (result,) = _probe(shared.daemon, core, [NO_DIGEST])
            with answered:
                answers += 1
                answered.notify_all()
            if result["state"] == "clean":
                assert result["digest"] in versions, f"a digest of no real content: {result}"
                n = versions[result["digest"]]
                assert n >= last, f"went back from version {last} to {n}"
                last = n
    finally:
        writer.join()
    final = oracle(core).tree
    assert versions[final] == len(alphabet) - 1
    assert shared.daemon.fresh([(core, final)], sync=True)["results"][0]["fresh"] is True
    assert_exact(shared.daemon, find_packages(shared.tree("burst")), roots=[shared.tree("burst")])


@pytest.mark.parametrize("synced", [False, True], ids=["alone", "answering-a-sync"])
def test_events_stream_a_package_change(shared: Shared, synced: bool) -> None:
    """The dirty and clean events of an edit; also when a sync query waits for the edit
    (the engine then publishes them after answering it)."""
    core = shared.tree("events") / "core"
    conn = UnixConnection(shared.daemon.socket, timeout=DEADLINE)
    try:
        conn.request("GET", "/v1/events")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("text/event-stream")
        hello = _next_event(response)
        assert hello[0] == "hello", hello
        write(core / "src/core/m0.py", f"x = 'streamed {synced}'\n")
        want = oracle(core).tree
        if synced:
            answer = shared.daemon.fresh([(core, want)], sync=True)
            assert answer["synced"] is True and answer["results"][0]["fresh"] is True, answer
        seen = []
        deadline = time.monotonic() + DEADLINE
        while True:
            kind, data = _next_event(response)
            seen.append((kind, data))
            if kind == "package" and (data["path"], data["state"], data["tree"]) == (
                str(core),
                "clean",
                want,
            ):
                break
            assert time.monotonic() < deadline, f"no clean event with the new digest: {seen}"
        assert any(k == "package" and d["state"] == "dirty" for k, d in seen), seen
    finally:
        conn.close()
    assert_exact(shared.daemon, find_packages(core.parent), roots=[core.parent])


def _next_event(response: http.client.HTTPResponse) -> tuple[str, Any]:
    """The next server-sent event (kind, decoded data), skipping keep-alive comments."""
    kind, data = "message", ""
    while True:
        line = response.readline().decode()
        assert line, "the event stream ended"
        line = line.rstrip("\r\n")
        if not line:
            if data:
                return kind, json.loads(data)
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "event":
            kind = value.strip()
        elif field == "data":
            data += value.strip()


def test_metrics_are_prometheus_text(shared: Shared) -> None:
    def events_total() -> float:
        answer = shared.daemon.request("GET", "/metrics")
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(answer.raw.decode())}
        assert {"freshd_events", "freshd_rehashed_files", "freshd_queries"} <= set(families)
        assert families["freshd_events"].type == "counter"
        assert b"freshd_events_total" in answer.raw
        return sum(s.value for s in families["freshd_events"].samples if s.name.endswith("_total"))

    tree = shared.tree("metrics")
    before = events_total()
    write(tree / "core/src/core/m0.py", "x = 'counted'\n")
    assert_exact(shared.daemon, find_packages(tree), roots=[tree])
    assert events_total() > before


def test_lookup_by_path_and_name(shared: Shared) -> None:
    tree = shared.tree("lookup")
    core = tree / "core"
    daemon = shared.daemon
    by_path = daemon.call("GET", f"/v1/packages/lookup?path={core}")
    assert (by_path["path"], by_path["tree"]) == (str(core), oracle(core).tree)
    # Every monorepo copy has a "core": the name is ambiguous; a path inside a root is not.
    ambiguous = daemon.request("GET", "/v1/packages/lookup?name=core")
    assert ambiguous.status == 409 and ambiguous.json["error"]["code"], ambiguous
    os.symlink(core, tree / "core-link")
    via_link = daemon.call("GET", f"/v1/packages/lookup?path={tree / 'core-link'}")
    assert via_link["path"] == str(core)
    missing = daemon.request("GET", f"/v1/packages/lookup?path={tree / 'nothing'}")
    assert missing.status == 404 and missing.json["error"]["code"] == "not_found"


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_input_is_a_4xx_json_error(shared: Shared, name: str) -> None:
    method, target, body = BAD_REQUESTS[name]
    answer = shared.daemon.request(method, target, raw=body, timeout=30)
    assert 400 <= answer.status < 500, answer
    error = answer.json["error"]
    assert isinstance(error["code"], str) and error["code"], answer
    assert isinstance(error["message"], str) and error["message"], answer
    assert answer.headers.get("freshd-api") == "1"
    assert shared.daemon.health()["status"] == "ready"


def test_a_good_request_is_answered(shared: Shared) -> None:
    """The control for the bad-input cases: the same shape, well formed."""
    body = json.loads(fresh_body())
    answer = shared.daemon.call("POST", "/v1/fresh", body)
    assert answer["results"] == [
        {"path": "/nowhere/pkg", "fresh": None, "state": "unknown", "digest": None}
    ]


def test_oversized_and_unsized_bodies_are_refused(shared: Shared) -> None:
    daemon = shared.daemon
    big = b'{"items": [], "pad": "' + b"x" * (1 << 20) + b'"}'
    answer = daemon.request("POST", "/v1/fresh", raw=big, timeout=30)
    assert answer.status == 413, answer
    assert answer.json["error"]["code"]
    # A Content-Length that announces too much is refused before any body is read.
    lying = daemon.request(
        "POST", "/v1/fresh", raw=b"{}", headers={"Content-Length": str(50 << 20)}, timeout=30
    )
    assert lying.status == 413, lying
    # A body of unknown size (chunked) is refused rather than buffered.
    chunked = daemon.request("POST", "/v1/fresh", raw=iter([b'{"items": []}']), timeout=30)
    assert chunked.status in (411, 413), chunked
    assert chunked.json["error"]["code"]
    assert daemon.health()["status"] == "ready"


# -- daemons of their own ------------------------------------------------------------------


@pytest.fixture
def mono(tmp_path: Path) -> Path:
    return make_mono(tmp_path / "mono")


def test_roots_can_be_added_and_removed(
    freshd_factory: Factory, mono: Path, tmp_path: Path
) -> None:
    daemon = freshd_factory(mono)
    other = tmp_path / "other"
    make_package(other, "alpha")
    make_package(other / "libs", "beta")
    answer = daemon.call("POST", "/v1/roots", {"path": str(other)})
    assert answer["root"] == str(other)
    assert str(other) in answer["roots"] and str(mono) in answer["roots"]
    assert daemon.health()["watch"][str(other)] == "watching"
    assert_exact(daemon, find_packages(other), roots=[other])
    write(other / "alpha/src/alpha/m0.py", "x = 'watched'\n")  # the new root is watched
    assert_exact(daemon, find_packages(other), roots=[other])
    again = daemon.request("POST", "/v1/roots", {"path": str(other)})
    assert again.status == 200, again
    overlapping = daemon.request("POST", "/v1/roots", {"path": str(other / "libs")})
    assert overlapping.status == 409 and overlapping.json["error"]["code"], overlapping

    alpha = other / "alpha"
    digest = oracle(alpha).tree
    removed = daemon.call("DELETE", f"/v1/roots?path={other}")
    assert removed["roots"] == [str(mono)]
    assert not [p for p in daemon.packages() if p.startswith(str(other))]
    result = daemon.fresh([(alpha, digest)], sync=True)["results"][0]
    assert (result["fresh"], result["state"]) == (None, "unknown")
    assert_exact(daemon, find_packages(mono))


def test_sigterm_and_sigint_stop_cleanly(freshd_factory: Factory, mono: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        daemon = freshd_factory(mono)
        assert os.path.exists(daemon.socket)
        assert daemon.stop(sig) == 0, daemon.log()
        assert not os.path.exists(daemon.socket)
        assert not daemon.answers()
        status = subprocess.run(
            [FRESHD, "status"], env=daemon.env, capture_output=True, text=True, timeout=DEADLINE
        )
        assert status.returncode == 2, status
        assert "Traceback" not in daemon.log()
        assert daemon.log().rstrip().endswith("stopped"), daemon.log()


def test_ctrl_c_stops_the_daemon_and_its_workers_quietly(
    freshd_factory: Factory, mono: Path
) -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the
    daemon and its hashing processes. The daemon stops the pool; no worker reports a
    KeyboardInterrupt of its own."""
    daemon = freshd_factory(mono, args=["--workers", "2"])
    workers = daemon.leftovers()
    assert len(workers) == 2, workers  # the crawl's pool, kept while it may be needed
    assert daemon.proc is not None
    os.killpg(daemon.pid, signal.SIGINT)
    assert daemon.proc.wait(DEADLINE) == 0, daemon.log()
    wait_until(lambda: not daemon.leftovers(), "the workers to exit")
    assert "Traceback" not in daemon.log() and "KeyboardInterrupt" not in daemon.log()
    assert daemon.log().rstrip().endswith("stopped"), daemon.log()


def test_socket_is_private(freshd_factory: Factory, mono: Path) -> None:
    daemon = freshd_factory(mono)
    st = os.lstat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(daemon.socket)).st_mode) == 0o700
    assert_exact(daemon, find_packages(mono))
    # A socket directory other users can write to is refused.
    shared_dir = freshd_factory.sock_base / "open"
    shared_dir.mkdir()
    shared_dir.chmod(0o777)
    refused = freshd_factory(mono, socket_path=str(shared_dir / "freshd.sock"), wait=False)
    assert _exit_code(refused) == 1
    assert _one_error_line(refused).count(str(shared_dir)) == 1
    assert not (shared_dir / "freshd.sock").exists()


def _exit_code(daemon: Daemon) -> int:
    assert daemon.proc is not None
    return daemon.proc.wait(DEADLINE)


def _one_error_line(daemon: Daemon) -> str:
    lines = daemon.log().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), daemon.log()
    return lines[0]


def test_a_second_daemon_is_refused(freshd_factory: Factory, mono: Path) -> None:
    first = freshd_factory(mono)
    same_index = freshd_factory(mono, db=first.db, wait=False)
    assert _exit_code(same_index) == 1
    line = _one_error_line(same_index)
    assert f"pid {first.pid}" in line and first.socket in line, line
    # Another index, the same socket: the live socket is neither stolen nor removed.
    same_socket = freshd_factory(mono, socket_path=first.socket, wait=False)
    assert _exit_code(same_socket) == 1
    assert first.socket in _one_error_line(same_socket)
    assert first.health()["pid"] == first.pid
    assert_exact(first, find_packages(mono))


@pytest.mark.parametrize("address", ["0.0.0.0:0", "[::]:0", "192.0.2.1:7420", "example.com:80"])
def test_tcp_refuses_non_loopback_addresses(
    freshd_factory: Factory, mono: Path, address: str
) -> None:
    daemon = freshd_factory(mono, args=["--tcp", address], wait=False)
    assert _exit_code(daemon) == 1
    assert address in _one_error_line(daemon)
    assert not os.path.exists(daemon.socket)


def test_tcp_requires_the_token(freshd_factory: Factory, mono: Path) -> None:
    daemon = freshd_factory(mono, args=["--tcp", "127.0.0.1:0", "--workers", "2"])
    host, port = tcp_address(daemon)
    assert host == "127.0.0.1"
    token_path = daemon.db / "token"
    assert stat.S_IMODE(os.stat(token_path).st_mode) == 0o600
    token = token_path.read_text().strip()
    core = mono / "core"
    body = json.dumps({"items": [{"path": str(core), "digest": oracle(core).tree}]}).encode()

    def over_tcp(method: str, target: str, headers: dict[str, str]) -> Any:
        conn = http.client.HTTPConnection(host, port, timeout=DEADLINE)
        payload = body if method == "POST" else None
        return http_request(conn, method, target, payload, headers)

    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        for method, target in (("GET", "/v1/health"), ("POST", "/v1/fresh")):
            answer = over_tcp(method, target, headers)
            assert answer.status == 401, (headers, answer)
            assert answer.json["error"]["code"] == "unauthorized"
    good = {"Authorization": f"Bearer {token}"}
    assert over_tcp("GET", "/v1/health", good).status == 200
    answer = over_tcp("POST", "/v1/fresh", good)
    assert answer.status == 200 and answer.json["results"][0]["fresh"] is True, answer
    assert daemon.request("GET", "/v1/health").status == 200  # the Unix socket needs none
    assert_exact(daemon, find_packages(mono))


def test_kill9_then_restart_answers_exactly(freshd_factory: Factory, mono: Path) -> None:
    first = freshd_factory(mono)
    write(mono / "core/src/core/m0.py", "x = 'written just before the kill'\n")
    first.kill9()  # maybe before the event was processed, maybe during the rehash
    assert stat.S_ISSOCK(os.lstat(first.socket).st_mode), "a killed daemon leaves its socket"
    assert not first.answers()

    # While no daemon runs: a same-size edit with the mtime put back (only ctime tells),
    # a deleted file, a new file, a new package, a deleted package.
    target = mono / "web/src/web/m0.py"
    st = os.stat(target)
    write(target, "x = 9\n")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(target).st_size == st.st_size
    (mono / "core/src/core/m1.py").unlink()
    write(mono / "core/src/core/added.py", "added = True\n")
    make_package(mono, "born_offline")
    shutil.rmtree(mono / "cli")

    second = freshd_factory(mono, db=first.db, socket_path=first.socket)
    assert "stale socket" in second.log(), second.log()
    assert second.health()["pid"] == second.pid
    assert_exact(second, find_packages(mono))
    write(mono / "web/src/web/m1.py", "x = 'after the restart'\n")
    assert_exact(second, find_packages(mono))


def test_a_killed_daemon_leaves_no_processes_behind(freshd_factory: Factory, mono: Path) -> None:
    """Its worker pool must not outlive it: orphaned workers keep the index open forever."""
    daemon = freshd_factory(mono)
    assert daemon.leftovers(), "the daemon started no worker pool: nothing to check"
    daemon.kill9()
    wait_until(lambda: not daemon.leftovers(), "the killed daemon's workers to exit", timeout=15)


@pytest.mark.slow
def test_the_log_holds_only_freshd_lines(freshd_factory: Factory, mono: Path) -> None:
    """Directories created in bursts must not make the daemon print anything but its log.

    watchdog can add the watch of a new subdirectory twice (from its parent's walk and
    from the queued creation event) and then warns with the repr of every watch: megabytes
    of stderr for a few hundred ``mkdir -p``. It is a race, so three bursts are made.
    """
    daemon = freshd_factory(mono)
    core = mono / "core/src/core"
    for burst in range(3):
        for i in range(300):
            (core / f"t{burst}-{i}/a/b/c/d/e").mkdir(parents=True)
        write(core / f"t{burst}-0/a/b/c/d/e/x.py", "x = 1\n")
        assert_exact(daemon, find_packages(mono))
    assert daemon.stop() == 0
    log = daemon.log()
    ours = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} freshd: ")  # timestamped
    foreign = [line[:200] for line in log.splitlines() if not ours.match(line)]
    assert not foreign, f"{len(log)} bytes of log; lines not from freshd: {foreign[:4]}"


def test_sync_across_many_roots(freshd_factory: Factory, tmp_path: Path) -> None:
    """One sync query writes a cookie per root; each must be waited for, even one the
    engine sees before the query has finished writing the others."""
    roots = [tmp_path / f"root{i}" for i in range(20)]
    packages = [make_package(root, f"pkg{i}") for i, root in enumerate(roots)]
    digests = {p: oracle(p).tree for p in packages}
    daemon = freshd_factory(*roots)
    for i in range(30):
        changed = packages[i % len(packages)]
        write(changed / f"src/{changed.name}/m0.py", f"x = {i}\n")
        digests[changed] = oracle(changed).tree
        answer = daemon.fresh(digests.items(), sync=True, timeout_ms=10_000)
        assert answer["synced"] is True, f"query {i} timed out: {answer}"
        assert all(r["fresh"] is True for r in answer["results"]), answer
    assert_exact(daemon, packages)


def test_a_file_rewritten_while_being_hashed(freshd_factory: Factory, tmp_path: Path) -> None:
    """A 64 MiB file rewritten in place, chunk by chunk, while the daemon rehashes it."""
    chunk, chunks = 1 << 20, 64
    root = tmp_path / "root"
    pkg = make_package(root, "big")
    target = pkg / "src/big/blob.bin"

    def content(round_: int, i: int) -> bytes:
        return f"{round_:04d}:{i:04d}:".encode().ljust(chunk, bytes([round_ % 251]))

    write(target, b"".join(content(0, i) for i in range(chunks)))
    daemon = freshd_factory(root)
    assert_exact(daemon, [pkg])
    first = oracle(pkg).tree
    done = threading.Event()

    def rewrite() -> None:
        try:
            fd = os.open(target, os.O_WRONLY)
            try:
                for round_ in range(1, 6):
                    for i in range(chunks):
                        os.pwrite(fd, content(round_, i), i * chunk)
            finally:
                os.close(fd)
        finally:
            done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        states = set()
        while not done.is_set():
            (result,) = _probe(daemon, pkg, [first])
            states.add(result["state"])
    finally:
        writer.join()
    assert "dirty" in states, states
    assert_exact(daemon, [pkg])
    assert oracle(pkg).tree != first


def test_a_sync_query_made_during_a_rehash_returns(freshd_factory: Factory, tmp_path: Path) -> None:
    """A cookie can arrive while the engine is scanning; with no event after it, it must
    still be acknowledged at once (it used to wait for the next file-system event)."""
    pkg = make_package(tmp_path / "root", "big")
    target = pkg / "src/big/blob.bin"
    write(target, bytes(64 << 20))  # a rescan hashes it: tens of milliseconds
    # No settle window: a package seen dirty is being scanned, so the cookie lands mid-scan.
    daemon = freshd_factory(tmp_path / "root", args=["--settle-ms", "0", "--workers", "2"])
    fd = os.open(target, os.O_WRONLY)
    try:
        for i in range(1, 11):
            before = daemon.packages()[str(pkg)]["generation"]
            os.pwrite(fd, f"version {i}".encode(), 0)
            # Marked dirty (a new generation): the rehash has begun, or on a loaded machine
            # already ended (a poll for the `dirty` state could miss it, then wait forever).
            wait_until(lambda b=before: daemon.packages()[str(pkg)]["generation"] > b, "dirty")
            answer = daemon.fresh([(pkg, NO_DIGEST)], sync=True, timeout_ms=10_000)
            assert answer["synced"] is True, f"write {i}: the sync query timed out: {answer}"
            assert_exact(daemon, [pkg])
    finally:
        os.close(fd)


# -- heavy: thousands of files ----------------------------------------------------------------


def _many_files(root: Path, packages: int, files: int) -> list[Path]:
    """``packages`` packages of ``files`` one-line modules, 100 per directory."""
    paths = []
    for p in range(packages):
        pkg = make_package(root, f"p{p}", {})
        for i in range(files):
            directory = pkg / f"src/p{p}/d{i // 100}"
            if i % 100 == 0:
                directory.mkdir(parents=True)
            write(directory / f"f{i}.py", f"value = {i}\n")
        paths.append(pkg)
    return paths


@pytest.mark.slow
def test_branch_switch_churn_loses_no_update(freshd_factory: Factory, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    packages = _many_files(root, 6, 500)
    original = {p: oracle(p) for p in packages}
    daemon = freshd_factory(root)
    assert_exact(daemon, packages)

    def switch(tag: str) -> None:
        """What a checkout does: rewrite every file, delete some, add some, move some."""
        for p, pkg in enumerate(packages):
            src = pkg / f"src/p{p}"
            for i in range(500):
                write(src / f"d{i // 100}" / f"f{i}.py", f"value = {i}  # {tag}\n")
            os.rename(src / "d4", src / f"d4-{tag}")
            (src / "d0/f0.py").unlink()
            write(src / f"new-{tag}.py", f"new = '{tag}'\n")

    switch("feature")
    assert_exact(daemon, packages)  # at once: a sync query right after the last write
    switched = {p: oracle(p) for p in packages}
    assert all(switched[p] != original[p] for p in packages)

    switch("again")
    assert_exact(daemon, packages)

    def settled() -> dict[str, Any] | None:
        health = daemon.health()
        return health if health["pending"] == 0 else None

    health = wait_until(settled, "no pending work")
    assert (health["status"], health["error"]) == ("ready", None)


@pytest.mark.slow
def test_a_change_during_the_initial_crawl(freshd_factory: Factory, tmp_path: Path) -> None:
    """Change files while health says ``indexing``; the crawl must not lose them.

    Every package is changed each time the crawl's progress moves, so some changes hit
    packages already crawled (only their events can reveal them) and others packages
    not crawled yet. A change counts as made during the crawl when health still says
    ``indexing`` after it, with at least one package done. The crawl of 40,000 files
    takes about a second here; if it ends too soon, the daemon is started again on a
    fresh index (the answers must be exact either way).
    """
    root = tmp_path / "repo"
    packages = _many_files(root, 8, 5000)
    proven = 0
    for attempt in range(3):
        daemon = freshd_factory(root, wait=False)
        progress = -1
        health = daemon.wait_status("indexing", "ready")
        while health["status"] == "indexing":
            done = (health["progress"] or {}).get("done", 0)
            if done != progress:
                progress = done
                for p, pkg in enumerate(packages):
                    write(pkg / f"src/p{p}/d{p}/f{p * 100}.py", f"changed {attempt}.{done}\n")
                    write(pkg / f"src/p{p}/during-{attempt}-{done}.py", "new\n")
                health = daemon.health()
                proven += done > 0 and health["status"] == "indexing"
            else:
                health = daemon.health()
        daemon.wait_status("ready")
        assert_exact(daemon, packages)
        if proven:
            break
        assert daemon.stop() == 0
    assert proven, "the crawl always ended before a change could be made during it"

    # SIGTERM during the crawl stops the daemon cleanly too.
    daemon = freshd_factory(root, wait=False)
    daemon.wait_status("indexing", "ready")
    assert daemon.stop() == 0, daemon.log()
    assert not os.path.exists(daemon.socket)
