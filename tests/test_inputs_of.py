"""``scan.inputs_of``: one list of what a digest depends on, for every cache that rests on it.

Each cache that answers by stat (the crawl's seals, the stat cache of ``freshd check``
for each scope) is taken of a real package, then one input of the digest is changed,
and the oracle (a from-scratch ``digest_path``) says whether the digest moved: a cache
that still vouches must then vouch for the digest as it is now. Before a change, the
test waits until the file system's clock is past every timestamp (what the racy window
guarantees in real use; the window itself is 0 here).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Link, Spec, make_tree, past_every_stamp
from freshd.index import seals
from freshd_client.content.oneshot import digest_path
from freshd_client.content.project import read_project
from freshd_client.content.scan import inputs_of, scan
from freshd_client.spec import identity
from freshd_client.spec.digest import Scope
from freshd_client.venvs import verified

PROJECT = '[project]\nname = "pkg"\n[tool.uv]\ncache-keys = [{ file = "VERSION" }]\n'

PACKAGE: dict[str, Spec] = {
    "pyproject.toml": PROJECT,
    "VERSION": "1\n",
    ".gitignore": "*.log\n",
    "keep.txt": "kept\n",
    "notes.log": "ignored\n",
    "src/pkg/__init__.py": "x = 1\n",
}


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "RACY_WINDOW_NS", 0)


def _build(tmp_path: Path, *, linked: bool = False) -> Path:
    """The package; ``linked``: its pyproject.toml a symlink to one beside it (its rules
    and cache keys are then read through the link)."""
    if not linked:
        return make_tree(tmp_path / "pkg", PACKAGE)
    make_tree(tmp_path / "shared", {"pyproject.toml": PROJECT})
    return make_tree(
        tmp_path / "pkg", {**PACKAGE, "pyproject.toml": Link("../shared/pyproject.toml")}
    )


def _write(rel: str, data: str) -> Callable[[Path], None]:
    return lambda pkg: (pkg / rel).write_text(data)


CHANGES: dict[str, Callable[[Path], None]] = {
    "a member's content": _write("keep.txt", "KEPT\n"),
    "a new file": _write("src/pkg/new.py", ""),
    "the rules in pyproject.toml": _write(
        "pyproject.toml", PROJECT + '[tool.freshd]\nexclude = ["keep.txt"]\n'
    ),
    "a .gitignore": _write(".gitignore", "*.log\nkeep.txt\n"),
    "a cache key": _write("VERSION", "2\n"),
}


def _digests(pkg: Path) -> dict[Scope, str | None]:
    return {"tree": digest_path(str(pkg), "tree").tree, "meta": digest_path(str(pkg), "meta").meta}


def _seal(pkg: Path) -> Callable[[], dict[Scope, str] | None]:
    """A seal of the package: what it vouches for (both digests) while it holds."""
    path = str(pkg)
    started = time.time_ns()
    project = read_project(path)
    dirs: list[tuple[str, os.stat_result]] = []
    raw = seals.take(scan(path, dirs=dirs, project=project), project, dirs, started)
    seal = seals.decode(raw) if raw else None
    return lambda: {"tree": seal.tree, "meta": seal.meta} if seal and seal.holds(path) else None


def _stat_cache(scope: Scope) -> Callable[[Path], Callable[[], dict[Scope, str] | None]]:
    def take(pkg: Path) -> Callable[[], dict[Scope, str] | None]:
        path = str(pkg)
        if scope == "tree":
            dirs: list[tuple[str, os.stat_result]] | None = []
            snapshot, project = None, read_project(path)
        else:
            dirs = None
            snapshot, project = verified.meta_snapshot(path)
        result = scan(path, scopes=(scope,), dirs=dirs, project=project)
        digest = result.tree if scope == "tree" else result.meta
        assert digest is not None
        entry = verified.entry_for(result, digest, "install", dirs=dirs, snapshot=snapshot)
        held = {scope: digest}
        return lambda: held if verified.still_fresh(entry, path, digest, "install") else None

    return take


CACHES = {"seal": _seal, "check tree": _stat_cache("tree"), "check meta": _stat_cache("meta")}


@pytest.mark.parametrize("change", list(CHANGES))
@pytest.mark.parametrize("cache", list(CACHES))
def test_no_cache_vouches_for_a_digest_an_input_change_moved(
    tmp_path: Path, cache: str, change: str
) -> None:
    pkg = _build(tmp_path)
    vouches = CACHES[cache](pkg)
    before = vouches()
    assert before is not None, f"{cache} took no entry of the package"
    assert before == {scope: d for scope, d in _digests(pkg).items() if scope in before}
    past_every_stamp(tmp_path, tmp_path / "probe")
    CHANGES[change](pkg)
    now = _digests(pkg)
    held = vouches()
    if held is not None:
        assert {scope: now[scope] for scope in held} == held, f"{cache} vouches after: {change}"


@pytest.mark.parametrize("cache", list(CACHES))
def test_no_cache_rests_on_a_project_file_read_through_a_link(tmp_path: Path, cache: str) -> None:
    """The drift this list ended: the seals took a linked pyproject.toml that no cache
    key names by its link's identity (a member's), while the rules came through it; an
    edit of its target then left the seal holding over another file set."""
    assert CACHES[cache](_build(tmp_path / "linked", linked=True))() is None
    assert CACHES[cache](_build(tmp_path / "plain"))() is not None


def test_the_inputs_are_the_rules_and_what_the_meta_digest_reads() -> None:
    from freshd_client.content.project import CacheKey

    keys = (CacheKey(file="VERSION"), CacheKey(dir="src"))
    assert inputs_of(keys, ("tree",), ["pyproject.toml", "a/.gitignore"]) == [
        "pyproject.toml",
        "a/.gitignore",
    ]
    assert inputs_of(keys, ("meta",)) == [
        "pyproject.toml",
        "setup.py",
        "setup.cfg",
        "VERSION",
        "src",
    ]
    assert inputs_of(None, ("meta",)) == ["pyproject.toml", "setup.py", "setup.cfg", "src"]
    assert inputs_of((CacheKey(git_commit=True),), ("tree",)) == ["pyproject.toml"]
    assert inputs_of((CacheKey(git_commit=True),), ("tree", "meta")) is None
    assert inputs_of((CacheKey(file="*.txt"),), ("meta",)) is None
    assert inputs_of((CacheKey(file="../other/VERSION"),), ("meta",)) is None
