"""The scrub: a periodic ``lstat`` sweep that sees what inotify does not report.

In-process, on a real index built by the crawl, with the clock handed to ``step``: what
the sweep reports and how it spreads its work. Then a real daemon and a real write
through a shared ``mmap`` (no event until the last mapping goes), seen within the bound.
"""

from __future__ import annotations

import mmap
import os
import time
from pathlib import Path

import pytest

from conftest import oracle_tree_digest
from freshd import config
from freshd.crawl.indexer import index_roots
from freshd.errors import ConfigError
from freshd.index.writer import Index
from freshd.watch import scrub
from freshd.watch.scrub import Scrub
from freshd_client.spec import identity

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import (  # noqa: E402
    DEADLINE,
    Factory,
    assert_exact,
    make_package,
)

pytest_plugins = ["daemon_harness"]

PERIOD = 10.0


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records of files written by the test are trusted at once (the rule has a test)."""
    monkeypatch.setattr(identity, "RACY_WINDOW_NS", 0)


def _indexed(tmp_path: Path, packages: int, files: int) -> tuple[Index, list[str]]:
    root = tmp_path / "root"
    paths = []
    for n in range(packages):
        spec = {f"src/m{i}.py": f"x = {n, i}\n" for i in range(files - 1)}
        paths.append(str(make_package(root, f"p{n}", spec)))
    index = Index(str(tmp_path / "db"))
    index_roots(index, [str(root)], workers=1)
    return index, sorted(paths)


def _sweep(s: Scrub, packages: list[str], start: float) -> tuple[list[str], float]:
    """Step through one whole sweep from ``start``; what it reported, and when it ended."""
    now, found = start, []
    sweeps = s.sweeps
    while s.sweeps == sweeps:
        due = s.due()
        assert due is not None
        now = max(now, due)
        found += s.step(now, packages)
    return found, now


@pytest.mark.usefixtures("no_racy_window")
def test_the_scrub_reports_packages_whose_files_changed_without_an_event(tmp_path: Path) -> None:
    index, packages = _indexed(tmp_path, 4, 5)
    with index:
        s = Scrub(index, PERIOD)
        assert s.step(0.0, packages) == [] and s.due() == PERIOD / 2  # the crawl just looked
        found, _end = _sweep(s, packages, 0.0)
        assert found == [] and s.checked == 4 * 5
        p0, p1, p2 = (Path(p) for p in packages[:3])
        with open(p0 / "src/m0.py", "ab") as f:  # content
            f.write(b"# more\n")
        st = os.lstat(p1 / "src/m1.py")  # same size, mtime put back: the ctime tells
        (p1 / "src/m1.py").write_text("y = (1, 1)\n")
        os.utime(p1 / "src/m1.py", ns=(st.st_atime_ns, st.st_mtime_ns))
        (p2 / "src/m2.py").unlink()
        found, _end = _sweep(s, packages, PERIOD * 2)
        assert sorted(found) == packages[:3]
        # A package no longer followed is not reported.
        (p0 / "src/m3.py").write_text("changed\n")
        found, _end = _sweep(s, packages[1:], PERIOD * 4)
        assert p0 not in map(Path, found) and sorted(found) == packages[1:3]


@pytest.mark.usefixtures("no_racy_window")
def test_a_sweep_is_spread_over_half_a_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scrub, "MIN_SLICE", 1)
    index, packages = _indexed(tmp_path, 3, 10)  # 30 files: 6 a step, 5 steps in 5 s
    with index:
        s = Scrub(index, PERIOD, step_seconds=1.0)
        s.step(0.0, packages)
        assert s.step(4.5, packages) == [] and s.checked == 0  # not due yet
        assert s.step(5.0, packages) == [] and s.checked == 6
        assert s.due() == 6.0
        found, end = _sweep(s, packages, 6.0)
        assert (found, s.checked, s.sweeps, end) == ([], 30, 1, 9.0)
        assert s.due() == 10.0  # the next sweep: half a period after this one began
        # A late step takes what it missed: the sweep still ends within its half period.
        s.step(10.0, packages)
        s.step(13.5, packages)
        assert s.checked == 30 + 27
        s.step(14.5, packages)
        assert (s.checked, s.sweeps, s.due()) == (60, 2, 15.5)  # a step on


@pytest.mark.usefixtures("no_racy_window")
@pytest.mark.parametrize("where", [0, -1])
def test_a_change_is_seen_within_a_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: int
) -> None:
    """Made just after the sweep looked at the file, first or last in its order."""
    monkeypatch.setattr(scrub, "MIN_SLICE", 1)
    index, packages = _indexed(tmp_path, 3, 10)
    with index:
        s = Scrub(index, PERIOD, step_seconds=1.0)
        s.step(0.0, packages)
        _found, end = _sweep(s, packages, 0.0)
        changed_at = end if where == -1 else PERIOD / 2
        (Path(packages[where]) / "pyproject.toml").write_text("# changed\n")
        now, found = changed_at, []
        while not found:
            due = s.due()
            assert due is not None
            now = max(now, due)
            found = s.step(now, packages)
        assert found == [packages[where]] and now - changed_at <= PERIOD


def test_a_racy_record_is_not_trusted(tmp_path: Path) -> None:
    """A file modified within the racy window of its hash may have changed again in the
    same timestamp tick: the sweep does not vouch for it, as the stat fast path does not."""
    index, packages = _indexed(tmp_path, 1, 3)
    with index:
        s = Scrub(index, PERIOD)
        s.step(0.0, packages)
        found, _end = _sweep(s, packages, PERIOD)
        assert found == packages


def test_a_period_of_zero_disables_the_scrub(tmp_path: Path) -> None:
    index, packages = _indexed(tmp_path, 1, 3)
    with index:
        (Path(packages[0]) / "src/m0.py").unlink()
        s = Scrub(index, 0.0)
        assert [s.step(t, packages) for t in (0.0, 1e6)] == [[], []]
        assert (s.due(), s.checked) == (None, 0)


def test_the_period_comes_from_the_argument_then_the_environment() -> None:
    env = {"FRESHD_SCRUB_SECONDS": "7.5"}
    assert config.load(index_dir="/i", env={}).scrub_seconds == config.SCRUB_SECONDS
    assert config.load(index_dir="/i", env=env).scrub_seconds == 7.5
    assert config.load(index_dir="/i", scrub_seconds=0, env=env).scrub_seconds == 0.0
    with pytest.raises(ConfigError, match=r"'--scrub-seconds' has value 'soon'"):
        config.load(index_dir="/i", env={"FRESHD_SCRUB_SECONDS": "soon"})
    with pytest.raises(ConfigError, match="--scrub-seconds"):
        config.load(index_dir="/i", scrub_seconds=-1, env={})


# -- a real daemon, a real mapping --------------------------------------------------------

SCRUB_S = 1.0
BOUND_S = SCRUB_S + 1.0  # a period and a step; the rescan comes on top


def test_an_mmap_write_is_seen_within_the_bound(tmp_path: Path, freshd_factory: Factory) -> None:
    """A write through a shared mapping raises no inotify event while the mapping lives;
    the scrub sees the mtime the write fault set, and the package is rescanned."""
    root = tmp_path / "root"
    pkg = make_package(root, "mapped", {"src/mapped/data.bin": b"a" * 4096})
    daemon = freshd_factory(root, args=["--workers", "1", "--scrub-seconds", str(SCRUB_S)])
    before = oracle_tree_digest(pkg)
    assert daemon.fresh([(pkg, before)], sync=True)["results"][0]["fresh"] is True
    with open(pkg / "src/mapped/data.bin", "r+b") as fh, mmap.mmap(fh.fileno(), 0) as mapped:
        mapped[:5] = b"12345"  # the mapping stays until after every assertion
        written = time.monotonic()
        after = oracle_tree_digest(pkg)
        assert after != before
        info = daemon.wait_package(
            pkg, lambda i: i["state"] == "clean" and i["tree"] == after, "the mmap write seen"
        )
        seen = time.monotonic() - written
        # The bound, with room for the rescan and a loaded machine.
        assert seen < BOUND_S + DEADLINE / 4, f"seen after {seen:.1f} s"
        assert info["tree"] == after
        answer = daemon.fresh([(pkg, before), (pkg, after)], sync=False)["results"]
        assert [r["fresh"] for r in answer] == [False, True]
        assert_exact(daemon, [pkg])
        mapped[5:10] = b"67890"  # same page, still dirty: no fault, see docs/reliability.md
    # The last mapping gone, the kernel reports the close of the written file (and the
    # racy rule makes the scrub look again at a file hashed just after its write).
    last = oracle_tree_digest(pkg)
    daemon.wait_package(pkg, lambda i: i["tree"] == last, "the write reported at munmap")
    assert_exact(daemon, [pkg])
