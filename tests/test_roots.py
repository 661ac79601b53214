"""The roots a daemon watches persist in the index (issue 21, item 2).

``freshd add`` is remembered across restarts; ``freshd serve ROOT…`` states the roots
of its run and drops the others with their packages; ``freshd remove`` forgets any
root the daemon remembers, one missing now too. Real daemons, real files, the real CLI.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from freshd.index.writer import Index
from freshd.roots import choose
from freshd_client.errors import FreshdError

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import (  # noqa: E402
    DEADLINE,
    FRESHD,
    Daemon,
    Factory,
    assert_exact,
    make_package,
    wait_until,
    write,
)

pytest_plugins = ["daemon_harness"]


def freshd(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against ``daemon`` (its socket and index from the environment)."""
    return subprocess.run(
        [FRESHD, *args], env=daemon.env, capture_output=True, text=True, timeout=DEADLINE
    )


def tree(base: Path, *names: str) -> tuple[Path, list[Path]]:
    """A root ``base`` holding a package per name; the canonical root and packages."""
    packages = [make_package(base, name) for name in names]
    return base.resolve(), [p.resolve() for p in packages]


def indexed(daemon: Daemon) -> set[str]:
    return set(daemon.packages())


def test_choose() -> None:
    def here() -> str:
        return "/cwd"

    assert choose([], [], here).roots == ["/cwd"]
    remembered = choose([], ["/src/b", "/src/a", "/src/a/inner"], here)
    assert (remembered.roots, remembered.source) == (["/src/a", "/src/b"], "remembered")
    assert (remembered.dropped, remembered.merged) == ([], {"/src/a/inner": "/src/a"})
    given = choose(["/src/b"], ["/src/a", "/src/b"], here)
    assert (given.roots, given.source, given.dropped) == (["/src/b"], "given", ["/src/a"])
    with pytest.raises(FreshdError, match="overlap"):
        choose(["/src", "/src/a"], [], here)


def test_an_added_root_is_watched_again_after_a_restart(
    freshd_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, first_pkgs = tree(tmp_path / "first", "alpha")
    other, other_pkgs = tree(tmp_path / "other", "beta", "gamma")
    daemon = freshd_factory(first)
    added = freshd(daemon, "add", str(other))
    assert added.returncode == 0, added
    assert_exact(daemon, other_pkgs, roots=[other])
    assert daemon.stop() == 0

    # A plain `freshd serve` from elsewhere: the remembered roots, not the current directory.
    elsewhere = tmp_path / "elsewhere"
    make_package(elsewhere, "not-a-root")
    monkeypatch.chdir(elsewhere)
    again = freshd_factory(db=daemon.db)
    assert again.health()["roots"] == sorted([str(first), str(other)])
    assert_exact(again, first_pkgs, roots=[first])
    assert_exact(again, other_pkgs, roots=[other])
    assert not [p for p in indexed(again) if p.startswith(str(elsewhere.resolve()))]
    write(other / "beta/src/beta/m0.py", "x = 'still watched'\n")
    assert_exact(again, other_pkgs, roots=[other])  # events of the remembered root followed
    assert "roots (remembered)" in again.log()


def test_a_plain_serve_with_nothing_remembered_watches_the_current_directory(
    freshd_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here, pkgs = tree(tmp_path / "here", "alpha")
    monkeypatch.chdir(here)
    daemon = freshd_factory()
    assert daemon.health()["roots"] == [str(here)]
    assert_exact(daemon, pkgs, roots=[here])
    assert daemon.stop() == 0
    monkeypatch.chdir(tmp_path)
    again = freshd_factory(db=daemon.db)  # remembered now, wherever it is started from
    assert again.health()["roots"] == [str(here)]


def test_serve_with_roots_drops_the_others_and_their_packages(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    kept, kept_pkgs = tree(tmp_path / "kept", "alpha")
    old, old_pkgs = tree(tmp_path / "old", "beta", "gamma")
    daemon = freshd_factory(kept)
    assert freshd(daemon, "add", str(old)).returncode == 0
    assert_exact(daemon, old_pkgs, roots=[old])
    assert daemon.stop() == 0

    explicit = freshd_factory(kept, db=daemon.db)
    health = explicit.health()
    assert health["roots"] == [str(kept)]
    # No ghosts: the dropped root's packages are gone, not listed or counted as unknown.
    assert indexed(explicit) == {str(p) for p in kept_pkgs}
    assert health["packages"] == len(kept_pkgs)
    assert_exact(explicit, kept_pkgs)
    log = explicit.log()
    assert f"root {old} is no longer watched (not given to this freshd serve)" in log, log
    assert f"removed 2 package(s) of {old} from the index" in log, log
    assert explicit.stop() == 0

    with Index(str(daemon.db)) as index:  # what direct clients read: only the kept root
        assert index.roots() == [str(kept)]
        assert [r.path for r in index.packages()] == [str(p) for p in kept_pkgs]


def test_remove_forgets_a_remembered_root_that_is_missing(
    freshd_factory: Factory, tmp_path: Path
) -> None:
    kept, kept_pkgs = tree(tmp_path / "kept", "alpha")
    gone, gone_pkgs = tree(tmp_path / "gone", "beta")
    daemon = freshd_factory(kept)
    assert freshd(daemon, "add", str(gone)).returncode == 0
    assert_exact(daemon, gone_pkgs, roots=[gone])
    assert daemon.stop() == 0
    shutil.rmtree(gone)

    again = freshd_factory(db=daemon.db)
    health = again.health()
    assert health["roots"] == sorted([str(kept), str(gone)])
    assert health["watch"][str(gone)] == "missing"
    assert health["status"] == "degraded" and str(gone) in health["reasons"]
    assert indexed(again) == {str(p) for p in kept_pkgs}  # no ghost of the missing root
    removed = freshd(again, "remove", str(gone))
    assert removed.returncode == 0, removed
    assert removed.stdout == f"no longer watching {gone} (1 root)\n"
    wait_until(lambda: again.health()["status"] == "ready", "ready once the root is forgotten")
    assert again.health()["roots"] == [str(kept)]
    unknown = freshd(again, "remove", str(gone))  # now it is known nowhere
    assert unknown.returncode == 1 and str(gone) in unknown.stderr, unknown
    assert again.stop() == 0

    last = freshd_factory(db=daemon.db)
    assert last.health()["roots"] == [str(kept)]
    assert_exact(last, kept_pkgs, roots=[kept])


def test_roots_indexed_without_a_daemon_are_served_once_each(
    freshd_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``freshd index`` records its roots too; one inside another is watched as part of
    the outer one, not twice."""
    outer, pkgs = tree(tmp_path / "outer", "alpha")
    inner, inner_pkgs = tree(outer / "inner", "beta")
    db = tmp_path / "db"
    for root in (inner, outer):
        done = subprocess.run(
            [FRESHD, "index", str(root), "--db", str(db), "--workers", "1"],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        assert done.returncode == 0, done
    monkeypatch.chdir(tmp_path)
    daemon = freshd_factory(db=db)
    assert daemon.health()["roots"] == [str(outer)]
    assert f"root {inner} is inside the root {outer}: watched as part of it" in daemon.log()
    assert_exact(daemon, [*pkgs, *inner_pkgs], roots=[outer])
    assert daemon.stop() == 0
    with Index(str(db)) as index:
        assert index.roots() == [str(outer)]


def test_serve_refuses_overlapping_roots_in_one_line(tmp_path: Path) -> None:
    outer, _pkgs = tree(tmp_path / "outer", "alpha")
    inner = outer / "alpha"
    done = subprocess.run(
        [FRESHD, "serve", str(outer), str(inner), "--db", str(tmp_path / "db")],
        env={"FRESHD_SOCKET": str(tmp_path / "run" / "s.sock"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert done.returncode == 1, done
    message = f"Error: the roots {outer} and {inner} overlap: give only one\n"
    assert done.stderr.endswith(message) and done.stderr.count("\n") <= 2, done.stderr
    assert "Traceback" not in done.stderr
