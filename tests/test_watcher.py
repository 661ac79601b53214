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
import warnings
from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent

from freshd.watcher import Watcher

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


def test_a_deferred_watch_covers_what_is_added_and_no_more(tmp_path: Path) -> None:
    """``watch(root, deferred=True)`` watches the root alone; ``directory`` and ``tree``
    add the rest (the start-up crawl adds each before it lists it). Adding a watch again
    is silent and cheap (watchdog's warning held a repr of every watched path)."""
    root = tmp_path.resolve()
    for sub in ("a/b", "c/d"):
        (root / sub).mkdir(parents=True)
    seen: list[str] = []
    watcher = Watcher(
        lambda event: seen.append(event.src_path),
        on_overflow=lambda: None,
        on_limit=lambda path: None,
        on_moved=lambda path: None,
        on_unreadable=lambda path: None,
    )
    watcher.start()
    try:
        watcher.watch(str(root), deferred=True)

        def written(path: Path) -> None:
            write(path, "x\n")
            wait_until(lambda: str(path) in seen, f"an event for {path}")

        # A root's events arrive in order: once the marker's is in, one for the file
        # written before it would be too.
        write(root / "a/b/before.txt", "x\n")
        written(root / "marker1")
        assert str(root / "a/b/before.txt") not in seen
        watcher.directory(str(root / "c"))
        write(root / "c/d/below.txt", "x\n")
        written(root / "c/in-c.txt")
        assert str(root / "c/d/below.txt") not in seen
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            watcher.tree(str(root / "a"))
            watcher.tree(str(root / "a"))  # again: nothing to say
        written(root / "a/b/after.txt")
        written(root / "a/in-a.txt")
    finally:
        watcher.stop()


def test_nested_roots_each_keep_the_watches_added_below_them(tmp_path: Path) -> None:
    """``freshd serve`` takes roots inside one another: a watch added below both goes to
    both roots' groups, so the inner root stays watched once the outer one is removed."""
    outer = tmp_path.resolve()
    inner = outer / "inner"
    (inner / "sub").mkdir(parents=True)
    seen: list[str] = []
    ignore = lambda *_args: None  # noqa: E731
    watcher = Watcher(
        lambda event: seen.append(event.src_path),
        on_overflow=ignore,
        on_limit=ignore,
        on_moved=ignore,
        on_unreadable=ignore,
    )
    watcher.start()
    try:
        watcher.watch(str(outer), deferred=True)
        watcher.watch(str(inner), deferred=True)
        watcher.tree(str(inner / "sub"))
        watcher.unwatch(str(outer))
        write(inner / "sub/f.txt", "x\n")
        wait_until(lambda: str(inner / "sub/f.txt") in seen, "an event below the inner root")
    finally:
        watcher.stop()


def test_events_behind_a_move_held_for_pairing_keep_their_order(tmp_path: Path) -> None:
    """An event is handed over on the inotify reader's thread, except while the half of a
    move is held back for pairing: then it waits behind the move, so that a root's events
    arrive in the order they happened (a sync cookie after a rename is seen after it)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    seen: queue.SimpleQueue[FileSystemEvent] = queue.SimpleQueue()
    ignore = lambda *_args: None  # noqa: E731
    watcher = Watcher(
        seen.put, on_overflow=ignore, on_limit=ignore, on_moved=ignore, on_unreadable=ignore
    )
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
