"""The engine's logic driven in-process by a scripted event source.

No daemon and no watchdog observer: the test writes real files on tmp_path, hands the
engine watchdog's own event objects (``ScriptedSource``), and steps the loop itself
(``Engine.crawl``, ``Engine.step``); the engine writes the real index. Every digest is
compared with the one-shot oracle. What an event does not carry, the engine does not
learn: each test shows that by what stays unchanged until its event is emitted.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from watchdog.events import EventsLostEvent, FileCreatedEvent, FileModifiedEvent

from freshd.config import Config
from freshd.engine import Engine
from freshd.index.writer import Index
from freshd_client.spec import schema as sc

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import DEADLINE, make_package, oracle, wait_until, write  # noqa: E402
from scripted_source import ScriptedSource  # noqa: E402


@dataclass
class Scripted:
    """An engine on a real index, fed by ``source``, stepped by the test."""

    engine: Engine
    source: ScriptedSource
    index: Index
    root: Path
    published: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def record(self, path: Path) -> sc.PackageRecord | None:
        db = self.index.dbs[sc.DB_PACKAGES]
        return self.index.read(lambda txn: sc.get_package(txn, db, str(path)))

    def states(self, path: Path) -> list[str]:
        """The states published for the package at ``path``, in order."""
        return [d["state"] for k, d in self.published if k == "package" and d["path"] == str(path)]


@contextlib.contextmanager
def start(tmp_path: Path, *, canary_seconds: float = 3600.0) -> Iterator[Scripted]:
    root = (tmp_path / "root").resolve()
    make_package(root, "core")
    make_package(root, "other")
    cfg = Config(
        index_dir=str(tmp_path / "db"),
        workers=1,
        rescan_seconds=3600.0,
        canary_seconds=canary_seconds,
        scrub_seconds=0.0,
    )
    sources: list[ScriptedSource] = []

    def make(sink: Any) -> ScriptedSource:
        sources.append(ScriptedSource(sink))
        return sources[0]

    with Index(cfg.index_dir) as index:
        published: list[tuple[str, dict[str, Any]]] = []
        eng = Engine(
            index, cfg, [str(root)], source=make, publish=lambda k, d: published.append((k, d))
        )
        eng.crawl()
        try:
            yield Scripted(eng, sources[0], index, root, published)
        finally:
            eng.close()


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[Scripted]:
    with start(tmp_path) as s:
        yield s


def clean(s: Scripted, pkg: Path) -> str:
    record = s.record(pkg)
    assert record is not None and record.state == "clean", record
    assert record.tree is not None
    return record.tree


def test_the_crawl_writes_every_package_clean_with_the_oracle_digest(scripted: Scripted) -> None:
    for name in ("core", "other"):
        pkg = scripted.root / name
        assert clean(scripted, pkg) == oracle(pkg).tree


def test_a_modify_event_makes_its_package_dirty_then_clean_with_the_new_digest(
    scripted: Scripted,
) -> None:
    pkg = scripted.root / "core"
    before = clean(scripted, pkg)
    module = pkg / "src/core/m0.py"
    write(module, "x = 'edited'\n")
    scripted.engine.step()
    assert clean(scripted, pkg) == before  # no event, no news: the script decides

    scripted.published.clear()
    scripted.source.emit(FileModifiedEvent(str(module)))
    scripted.engine.step()
    assert scripted.states(pkg) == ["dirty", "clean"]
    assert clean(scripted, pkg) == oracle(pkg).tree != before
    assert scripted.states(scripted.root / "other") == []  # only the package named


def test_an_event_outside_the_file_set_is_dropped(scripted: Scripted) -> None:
    pkg = scripted.root / "core"
    before = scripted.record(pkg)
    cached = pkg / "src/core/__pycache__/m0.cpython-312.pyc"
    write(cached, b"bytecode")
    scripted.published.clear()
    scripted.source.emit(FileCreatedEvent(str(cached)), FileModifiedEvent(str(cached)))
    scripted.engine.step()
    assert scripted.engine.pending() == 0
    assert scripted.published == []
    assert scripted.record(pkg) == before
    assert before is not None and before.tree == oracle(pkg).tree  # truly outside it


def test_an_overflow_marks_every_package_of_the_root_dirty_and_rescans(
    scripted: Scripted,
) -> None:
    core, other = scripted.root / "core", scripted.root / "other"
    write(core / "src/core/m1.py", "changed = 1\n")
    write(other / "src/other/new.py", "added = 2\n")  # their events lost
    scripted.published.clear()
    scripted.source.emit(EventsLostEvent(str(scripted.root)))
    scripted.engine.step()
    for pkg in (core, other):
        assert scripted.states(pkg) == ["dirty", "clean"]
        assert clean(scripted, pkg) == oracle(pkg).tree


def test_a_sync_is_answered_only_after_its_cookies_event(scripted: Scripted) -> None:
    pkg = scripted.root / "core"
    module = pkg / "src/core/m2.py"
    write(module, "x = 'before the sync'\n")
    scripted.source.emit(FileModifiedEvent(str(module)))
    answers: list[bool] = []
    scripted.engine.sync([str(scripted.root)], answers.append)
    (cookie,) = [p for p in os.listdir(scripted.root) if p.startswith(sc.COOKIE_PREFIX)]
    scripted.engine.step()
    assert answers == []  # the cookie's event has not come: no answer yet
    assert clean(scripted, pkg) == oracle(pkg).tree  # processed, answered or not

    scripted.source.emit(FileCreatedEvent(str(scripted.root / cookie)))
    scripted.engine.step()
    assert answers == [True]
    # The cookie file is deleted once the engine is idle.
    wait_until(
        lambda: (scripted.engine.step(), not (scripted.root / cookie).exists())[1],
        "the acknowledged cookie deleted",
    )


def test_a_remove_root_command_drops_its_packages(scripted: Scripted) -> None:
    done: list[BaseException | None] = []
    scripted.engine.remove_root(str(scripted.root), done.append)
    assert scripted.record(scripted.root / "core") is not None  # a queued command
    scripted.engine.step()
    assert done == [None]
    assert scripted.record(scripted.root / "core") is None
    assert scripted.record(scripted.root / "other") is None
    assert {d["path"] for k, d in scripted.published if k == "removed"} == {
        str(scripted.root / "core"),
        str(scripted.root / "other"),
    }
    assert scripted.engine.roots == {}

    scripted.engine.remove_root(str(scripted.root), done.append)
    scripted.engine.step()
    assert isinstance(done[-1], Exception)
    assert "is not a root" in str(done[-1])


def test_a_late_canary_makes_the_root_blind_and_its_packages_unknown(tmp_path: Path) -> None:
    period = 0.05
    with start(tmp_path, canary_seconds=period) as s:
        pkg = s.root / "core"
        assert clean(s, pkg) == oracle(pkg).tree
        state = s.engine.roots[str(s.root)]
        s.engine.step()
        canary = state.canary
        assert canary is not None and os.path.exists(canary)  # written, never emitted
        sent = time.monotonic()
        wait_until(lambda: (s.engine.step(), state.mode == "blind")[1], "the root found blind")
        assert time.monotonic() - sent >= 2 * period  # not before it was late
        assert "delivered no event" in (state.reason or "")
        s.engine.step()  # the marks made by the step that found it blind are written
        record = s.record(pkg)
        assert record is not None and record.state == "dirty"  # readers answer unknown
        assert s.engine.problems() == {str(s.root): state.reason}

        # A canary given back: the root is watched again, rescanned and clean.
        def returned() -> bool:
            s.engine.step()
            if state.canary is not None:
                s.source.emit(FileCreatedEvent(state.canary))
            return state.mode == "watching"

        wait_until(returned, "the root trusted again", timeout=DEADLINE)
        s.engine.step()
        assert clean(s, pkg) == oracle(pkg).tree
