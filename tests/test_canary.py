"""Fail closed: an engine whose watcher goes deaf stops answering "fresh".

The engine runs in-process on a real index and real files, with a watchdog observer
that can be deafened (fault injection through ``dispatch_events``, watchdog's public
override point): its events are read from the kernel and dropped. The direct client,
which never asks the daemon, must see the blindness in the index: after the canary
deadline no answer is ``True`` until events flow again and the root was rescanned.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from watchdog.observers import Observer
from watchdog.observers.api import EventQueue

from freshd.config import Config
from freshd.engine import Engine
from freshd.index.writer import Index

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import DEADLINE, make_package, oracle, wait_until, write  # noqa: E402

CANARY_SECONDS = 0.1


class DeafenableObserver(Observer):  # type: ignore[misc,valid-type]
    """watchdog's observer, dropping every event while ``deaf`` is set."""

    deaf = threading.Event()

    def dispatch_events(self, event_queue: EventQueue) -> None:
        if self.deaf.is_set():
            event_queue.get(block=True, timeout=self.timeout)
            event_queue.task_done()
            return
        super().dispatch_events(event_queue)


class DirectReader:
    """A direct client in a process of its own (LMDB allows one handle per process, and
    the engine holds the writer's): ``is_fresh`` through a pipe."""

    SCRIPT = (
        "import sys\n"
        "from freshd_client import Client\n"
        "with Client(index_dir=sys.argv[1], transport='direct') as c:\n"
        "    for line in sys.stdin:\n"
        "        path, digest = line.split()\n"
        "        print(repr(c.is_fresh(path, digest)), flush=True)\n"
    )

    def __init__(self, index_dir: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT, index_dir],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def is_fresh(self, path: str, digest: str) -> bool | None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{path} {digest}\n")
        self.proc.stdin.flush()
        answer = {"True": True, "False": False, "None": None}[self.proc.stdout.readline().strip()]
        return answer

    def close(self) -> None:
        self.proc.kill()
        self.proc.communicate()  # closes the pipes


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[Engine, Path, DirectReader]]:
    root = tmp_path / "root"
    make_package(root, "core")
    DeafenableObserver.deaf.clear()
    cfg = Config(
        index_dir=str(tmp_path / "db"),
        workers=1,
        rescan_seconds=0.2,
        canary_seconds=CANARY_SECONDS,
    )
    with Index(cfg.index_dir) as index:
        eng = Engine(index, cfg, [str(root.resolve())], observer=DeafenableObserver)
        eng.start()
        try:
            assert eng.ready.wait(DEADLINE)
            client = DirectReader(cfg.index_dir)
            try:
                yield eng, root.resolve(), client
            finally:
                client.close()
        finally:
            DeafenableObserver.deaf.clear()
            eng.stop()


def test_a_deaf_watcher_is_never_believed_after_the_canary_deadline(
    engine: tuple[Engine, Path, DirectReader],
) -> None:
    eng, root, client = engine
    pkg = root / "core"
    before = oracle(pkg).tree
    wait_until(lambda: client.is_fresh(str(pkg), before), "fresh while the watcher hears")

    DeafenableObserver.deaf.set()
    deafened = time.monotonic()
    write(pkg / "src/core/m0.py", "edited while nobody listens\n")
    after = oracle(pkg).tree
    wait_until(lambda: eng.roots[str(root)].mode == "blind", "the root found blind")
    # The documented bound: a canary every S, late after 2 S.
    assert time.monotonic() - deafened < DEADLINE
    reason = eng.roots[str(root)].reason or ""
    assert "delivered no event" in reason, reason
    wait_until(lambda: client.is_fresh(str(pkg), before) is None, "the old digest unknown")
    # From now on, as long as it is deaf: unknown, whatever the digest, on every read.
    until = time.monotonic() + 20 * CANARY_SECONDS
    while time.monotonic() < until:
        assert client.is_fresh(str(pkg), before) is None
        assert client.is_fresh(str(pkg), after) is None
        assert eng.roots[str(root)].mode == "blind"

    DeafenableObserver.deaf.clear()
    wait_until(lambda: client.is_fresh(str(pkg), after), "fresh again once events flow")
    assert eng.roots[str(root)].mode == "watching"
    assert client.is_fresh(str(pkg), before) is False


def test_a_root_renamed_away_is_not_followed_to_its_new_place(
    engine: tuple[Engine, Path, DirectReader],
) -> None:
    """The watch follows the directory, not the path; watchdog reports no rename of the
    root itself. The canary's identity check finds out: the packages under the old path
    leave the index and the directory now at the path is watched and indexed anew."""
    _eng, root, client = engine
    pkg = root / "core"
    before = oracle(pkg).tree
    wait_until(lambda: client.is_fresh(str(pkg), before), "fresh before the rename")
    root.rename(root.with_name("moved"))
    make_package(root, "core", {"src/core/m0.py": "another tree at the old path\n"})
    replaced = oracle(pkg).tree
    assert replaced != before
    wait_until(lambda: client.is_fresh(str(pkg), replaced), "the new tree indexed")
    assert client.is_fresh(str(pkg), before) is False
    write(pkg / "src/core/m0.py", "edited in the new tree\n")
    wait_until(lambda: client.is_fresh(str(pkg), oracle(pkg).tree), "its edits followed")
