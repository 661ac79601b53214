"""Mounts over watched directories: no inotify event, a mount-table change instead.

The parser against mountinfo lines written as the kernel writes them, then real
mounts (the tests run as root; skipped with the reason where mounting is refused):
the watcher's callback, and a real daemon (its scrub disabled, so that only the
mount table can tell it) that rescans a package when a tmpfs or a bind mount covers
one of its subdirectories, follows edits inside the mount, and again when it goes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import oracle_tree_digest
from freshd.watch.mounts import (
    MOUNTINFO,
    Mount,
    MountWatcher,
    affected,
    changed_points,
    parse,
    unescape,
)

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import Factory, assert_exact, make_package, wait_until, write  # noqa: E402

pytest_plugins = ["daemon_harness"]

# proc(5)'s example line, with a mount point that needs every escape the kernel writes.
LINE = (
    rb"36 35 98:0 /mnt\0401 /mnt/a\040b\011c\012d\134e rw,noatime master:1 - ext3 /dev/root "
    rb"rw,errors=continue"
)
ODD_NAME = "we ird\\dir\nname\t1"


def test_the_parser_undoes_the_kernels_escapes() -> None:
    mounts = parse(LINE + b"\n\nnot a mount line\n" + LINE.replace(b"36 35", b"37 35"))
    assert sorted(mounts) == [
        Mount(36, "98:0", "/mnt 1", "/mnt/a b\tc\nd\\e"),
        Mount(37, "98:0", "/mnt 1", "/mnt/a b\tc\nd\\e"),
    ]
    assert unescape(rb"/x\134040") == "/x\\040"  # an escaped backslash, then digits
    assert unescape("/caf\u00e9".encode()) == "/caf\u00e9"
    assert unescape(b"/\xff") == os.fsdecode(b"/\xff")


def test_the_changed_points_and_the_roots_they_affect() -> None:
    a, b, c = (
        Mount(1, "0:1", "/", "/w/r/p/sub"),
        Mount(2, "0:2", "/", "/w"),
        Mount(3, "0:3", "/", "/x"),
    )
    stacked = Mount(4, "0:4", "/", "/w/r/p/sub")  # a second mount at the same point
    assert changed_points(frozenset({a, b}), frozenset({a, b})) == set()
    assert changed_points(frozenset({a, b}), frozenset({a, stacked, c})) == {
        "/w/r/p/sub",
        "/w",
        "/x",
    }
    roots = ["/w/r", "/w/rr", "/v"]
    assert affected({"/w/r/p/sub"}, roots) == ["/w/r"]  # inside a root
    assert affected({"/w"}, roots) == ["/w/r", "/w/rr"]  # above roots
    assert affected({"/w/r"}, roots) == ["/w/r"]  # on a root
    assert affected({"/x", "/w/r2"}, roots) == []


@contextlib.contextmanager
def mounted(where: Path, *how: str) -> Iterator[Path]:
    """``mount HOW… where``, unmounted at the end whatever happens."""
    done = subprocess.run(["mount", *how, str(where)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(how)}): {done.stderr.strip()}")
    try:
        yield where
    finally:
        if os.path.ismount(where):
            subprocess.run(["umount", "-l", str(where)], check=False)


def test_the_watcher_reports_mounts_with_odd_names(tmp_path: Path) -> None:
    where = tmp_path / ODD_NAME
    where.mkdir()
    seen: queue.SimpleQueue[set[str]] = queue.SimpleQueue()
    watcher = MountWatcher(seen.put)
    watcher.start()
    try:
        assert watcher.active

        def reported() -> bool:
            with contextlib.suppress(queue.Empty):
                while True:
                    if str(where) in seen.get(timeout=0.05):
                        return True
            return False

        with mounted(where, "-t", "tmpfs", "-o", "size=1m", "tmpfs"):
            with open(MOUNTINFO, "rb") as fh:
                assert str(where) in {m.point for m in parse(fh.read())}
            wait_until(reported, "the mount reported")
            subprocess.run(["umount", str(where)], check=True)
            wait_until(reported, "the unmount reported")
    finally:
        watcher.stop()
    assert not watcher.active


def test_without_a_mount_table_nothing_is_watched(tmp_path: Path) -> None:
    watcher = MountWatcher(lambda points: None, path=str(tmp_path / "no-such-file"))
    watcher.start()
    assert not watcher.active
    watcher.stop()


@pytest.mark.parametrize("kind", ["tmpfs", "bind"])
def test_a_mount_over_a_package_subdirectory_is_rescanned(
    tmp_path: Path, freshd_factory: Factory, kind: str
) -> None:
    root = tmp_path / "root"
    pkg = make_package(
        root, "covered", {"src/covered/sub/hidden.py": "h = 1\n", "src/covered/top.py": "t = 1\n"}
    )
    sub = pkg / "src/covered/sub"
    outside = tmp_path / "outside"
    write(outside / "shown.py", "s = 1\n")
    how = ("-t", "tmpfs", "-o", "size=1m", "tmpfs") if kind == "tmpfs" else ("--bind", str(outside))
    # No scrub: only the mount table can tell the daemon.
    daemon = freshd_factory(root, args=["--workers", "1", "--scrub-seconds", "0"])
    assert_exact(daemon, [pkg])

    def matches() -> bool:
        info = daemon.packages().get(str(pkg))
        return info is not None and (info["state"], info["tree"]) == (
            "clean",
            oracle_tree_digest(pkg),
        )

    with mounted(sub, *how):
        wait_until(matches, f"the {kind} mount seen")
        assert_exact(daemon, [pkg])
        write(sub / "new.py", "n = 1\n")  # inside the mount: watched since it came
        wait_until(matches, f"a write inside the {kind} mount seen")
        assert_exact(daemon, [pkg])
        subprocess.run(["umount", str(sub)], check=True)
        wait_until(matches, f"the {kind} unmount seen")
        assert_exact(daemon, [pkg])
