"""The watcher for real: a daemon, real files and moves, answers against an oracle.

watchdog keeps a map from each inotify watch to the path it reports events under; a
directory moved around faster than watchdog pairs the two halves of a move (5 ms here)
left that map naming a wrong path, and edits below it were lost. Each scenario comes
from a soak seed; every answer is checked against digests recomputed from scratch.
"""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent

from freshd.watch import watchset
from freshd.watch.watcher import Watcher, identity

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import (  # noqa: E402
    DEADLINE,
    Factory,
    assert_exact,
    make_package,
    wait_until,
    write,
)

pytest_plugins = ["daemon_harness"]


def test_a_directory_moved_out_and_back_in_at_once_keeps_its_events(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    """A directory moved out of the root and back in under another name before the
    watcher has paired the first half, then its old parent moved: edits in the
    directory must still reach its new package (churn seed 163634105)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    first = make_package(root, "first")
    second = make_package(root, "second")
    write(first / "data/d16/sub/f.txt", "one\n")
    write(second / "data/g.txt", "two\n")
    write(second / "d39/h.txt", "three\n")
    daemon = freshd_factory(root)
    os.rename(first / "data/d16/sub", outside / "o27")
    os.rename(outside / "o27", second / "data/i28")  # within watchdog's pairing delay
    assert_exact(daemon, [first, second])
    os.rename(first, second / "d39/d44")  # the old parent moves, within the root
    assert_exact(daemon, [second / "d39/d44", second])
    write(second / "data/i28/f.txt", "")
    assert_exact(daemon, [second / "d39/d44", second])


def test_a_directory_moved_out_as_its_parent_moves_is_followed_back(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    """A directory moved out of the root just before its parent moves within it (both
    moves inside watchdog's pairing delay), later moved back in, then the parent moved
    again: edits in the returned directory must reach its package (churn seed
    845798740)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    pkg = make_package(root, "pkg")
    write(pkg / "d73/d90/d47/f.txt", "one\n")
    daemon = freshd_factory(root)
    os.rename(pkg / "d73/d90/d47", outside / "o94")
    os.rename(pkg / "d73", pkg / "d96")  # within watchdog's pairing delay
    assert_exact(daemon, [pkg])
    os.rename(outside / "o94", pkg / "i100")
    assert_exact(daemon, [pkg])
    os.rename(pkg / "d96", pkg / "d107")
    assert_exact(daemon, [pkg])
    write(pkg / "i100/f.txt", "two\n")
    assert_exact(daemon, [pkg])


def test_nested_roots_each_keep_their_watches(tmp_path: Path) -> None:
    """``freshd serve`` takes roots inside one another: the inner root stays watched once
    the outer one is removed."""
    outer = tmp_path.resolve()
    inner = outer / "inner"
    (inner / "sub").mkdir(parents=True)
    seen: list[str] = []
    watcher = Watcher(lambda event: seen.append(event.src_path))
    watcher.start()
    try:
        watcher.watch(str(outer))
        watcher.watch(str(inner))
        watcher.unwatch(str(outer))
        write(inner / "sub/f.txt", "x\n")
        wait_until(lambda: str(inner / "sub/f.txt") in seen, "an event below the inner root")
    finally:
        watcher.stop()


def test_the_kernel_lists_every_watched_directory(tmp_path: Path) -> None:
    """``watchset`` reads the kernel's own list of this process's inotify watches: every
    directory below a watched root is in it, one created later too, and one mounted over
    is not (its path leads to another inode than the one watched)."""
    root = tmp_path.resolve() / "root"
    for sub in ("a/b/c", "d"):
        (root / sub).mkdir(parents=True)
    seen: queue.SimpleQueue[str] = queue.SimpleQueue()
    watcher = Watcher(lambda event: seen.put(os.fsdecode(event.src_path)))
    watcher.start()
    try:
        before = watchset.watched()
        watcher.watch(str(root))
        dirs = [top for top, _d, _f in os.walk(root)]
        ids = {p: identity(p) for p in dirs}
        assert {p for p, i in ids.items() if i not in watchset.watched()} == set()
        assert not set(ids.values()) & before
        (root / "a/new").mkdir()
        write(root / "a/new/f.txt", "x")
        while seen.get(timeout=DEADLINE) != str(root / "a/new/f.txt"):
            pass
        assert identity(str(root / "a/new")) in watchset.watched()
        watcher.unwatch(str(root))
        wait_until(lambda: not set(ids.values()) & watchset.watched(), "the watches removed")
    finally:
        watcher.stop()


def test_fdinfo_lines_are_read_as_the_kernel_prints_them() -> None:
    text = (
        b"pos:\t0\nflags:\t02004000\nmnt_id:\t15\nino:\t1057\n"
        b"inotify wd:2 ino:3e9a8 sdev:800001 mask:fc6 ignored_mask:0 fhandle-bytes:8 "
        b"fhandle-type:1 f_handle:a8e90300e2e3f6a2\n"
        b"inotify wd:1 ino:ff sdev:fd00000 mask:fc6 ignored_mask:0 fhandle-bytes:8\n"
    )
    assert watchset.parse(text) == [(os.makedev(8, 1), 0x3E9A8), (os.makedev(253, 0), 0xFF)]


def test_events_behind_a_move_held_for_pairing_keep_their_order(tmp_path: Path) -> None:
    """An event is handed over on the inotify reader's thread, except while the half of a
    move is held back for pairing: then it waits behind the move, so that a root's events
    arrive in the order they happened (a sync cookie after a rename is seen after it)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    seen: queue.SimpleQueue[FileSystemEvent] = queue.SimpleQueue()
    watcher = Watcher(seen.put)
    watcher.start()
    try:
        watcher.watch(str(root))
        names: list[tuple[str, str]] = []
        for round_ in range(20):
            moved, after = f"moved{round_}", f"after{round_}"
            write(root / moved, "x")
            os.rename(root / moved, outside / moved)  # unpaired: held back, then a delete
            write(root / after, "y")
            deadline = time.monotonic() + DEADLINE
            while not names or names[-1] != ("FileClosedEvent", after):
                event = seen.get(timeout=max(0.0, deadline - time.monotonic()))
                names.append((type(event).__name__, os.path.basename(event.src_path)))
            gone = names.index(("FileDeletedEvent", moved))
            created = names.index(("FileCreatedEvent", after))
            assert gone < created, names
    finally:
        watcher.stop()
