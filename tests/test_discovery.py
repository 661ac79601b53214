"""Package discovery on a realistic monorepo with a uv workspace."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from conftest import Link, Spec, make_tree
from freshd.indexer import canonical_root
from freshd_client.discovery import Discovery, Package, discover, never_entered
from freshd_client.project import normalize_name, project_or_none

WORKSPACE_ROOT = """\
[project]
name = "Mono_Repo"
version = "0"

[tool.uv.workspace]
members = ["packages/*", "apps/*"]
exclude = ["packages/legacy", "apps/experimental*"]
"""

MONOREPO: dict[str, Spec] = {
    "pyproject.toml": WORKSPACE_ROOT,
    "packages/core/pyproject.toml": '[project]\nname = "Core.Lib"\n',
    "packages/core/src/core_lib/__init__.py": "",
    "packages/core/src/Core_Lib.egg-info/pyproject.toml": "",  # build output, not a package
    "packages/web/pyproject.toml": '[project]\nname = "web__APP"\n',
    "packages/web/node_modules/dep/setup.py": "",  # vendored JS dependency, pruned
    "packages/legacy/pyproject.toml": '[project]\nname = "legacy"\n',
    "packages/notes/README.md": "a member glob match that is no package\n",
    "packages/alias": Link("core"),  # symlink: never followed by discovery
    "packages/core/plugins/extra/pyproject.toml": '[project]\nname = "core-extra"\n',
    "apps/cli/pyproject.toml": '[project]\nname = "mono.cli"\n',
    "apps/experimental-ui/pyproject.toml": '[project]\nname = "exp-ui"\n',
    "tools/old/setup.py": "from setuptools import setup\nsetup(name='old-tool')\n",
    "tools/cfgonly/setup.cfg": "[metadata]\nname = Cfg_Only..Tool\n",
    "tools/cfgonly/cfg_only_tool.py": "",
    "tools/nameless/pyproject.toml": '[build-system]\nrequires = ["hatchling"]\n',
    "docs/conf.py": "",
    ".venv/pyvenv.cfg": "home = /usr/bin\n",
    ".venv/lib/python3.11/site-packages/vendored/pyproject.toml": '[project]\nname = "v"\n',
    "tools/env/pyvenv.cfg": "home = /usr/bin\n",
    "tools/env/src/pkg/setup.py": "",
    "node_modules/pkg/pyproject.toml": '[project]\nname = "nm"\n',
    ".git/pyproject.toml": "",
    ".tox/py311/pyproject.toml": "",
}

EXPECTED: dict[str, tuple[str | None, str | None]] = {
    # relative path: (normalized name, workspace root relative path)
    ".": ("mono-repo", None),
    "packages/core": ("core-lib", "."),
    "packages/web": ("web-app", "."),
    "packages/legacy": ("legacy", None),
    "packages/core/plugins/extra": ("core-extra", None),
    "apps/cli": ("mono-cli", "."),
    "apps/experimental-ui": ("exp-ui", None),
    "tools/old": ("old-tool", None),  # setup.py's literal name= (issue 21)
    "tools/cfgonly": ("cfg-only-tool", None),
    "tools/nameless": (None, None),
}


@pytest.fixture
def monorepo(tmp_path: Path) -> Path:
    make_tree(tmp_path / "mono", MONOREPO)
    return Path(canonical_root(str(tmp_path / "mono")))


@pytest.fixture
def found(monorepo: Path) -> Discovery:
    return discover(str(monorepo))


def _by_rel(found: Discovery, root: Path) -> dict[str, Package]:
    return {str(Path(p.path).relative_to(root)): p for p in found.packages}


def test_discovery_finds_exactly_the_real_packages(found: Discovery, monorepo: Path) -> None:
    assert sorted(_by_rel(found, monorepo)) == sorted(EXPECTED)
    assert found.problems == []


def test_discovery_lists_each_package_once_with_canonical_paths(
    found: Discovery, monorepo: Path
) -> None:
    paths = [p.path for p in found.packages]
    assert len(paths) == len(set(paths))
    for package in found.packages:
        assert Path(package.path).is_absolute()
        assert Path(package.path).resolve() == Path(package.path)
        assert package.root == str(monorepo)


def test_discovery_without_reading_finds_the_same_packages_and_reads_them_after(
    monorepo: Path,
) -> None:
    """The crawl's way: packages first, their project files later (``project_or_none``)."""
    whole = discover(str(monorepo), inside_packages=False)
    bare = discover(str(monorepo), inside_packages=False, read=False)
    assert [p.path for p in bare.packages] == [p.path for p in whole.packages]
    assert {(p.name, p.workspace, p.project) for p in bare.packages} == {(None, None, None)}
    assert [project_or_none(p.path) for p in bare.packages] == [p.project for p in whole.packages]
    with pytest.raises(ValueError, match="inside_packages"):
        discover(str(monorepo), read=False)


def test_discovery_normalizes_names_per_pep_503(found: Discovery, monorepo: Path) -> None:
    names = {rel: p.name for rel, p in _by_rel(found, monorepo).items()}
    assert names == {rel: name for rel, (name, _ws) in EXPECTED.items()}


def test_discovery_records_workspace_membership(found: Discovery, monorepo: Path) -> None:
    members = {
        rel: p.workspace
        for rel, p in _by_rel(found, monorepo).items()
        if rel != "."  # whether the root counts as its own member is not specified
    }
    expected = {
        rel: (str(monorepo) if ws == "." else None)
        for rel, (_name, ws) in EXPECTED.items()
        if rel != "."
    }
    assert members == expected


def test_discovery_ignores_packages_inside_virtual_environments(found: Discovery) -> None:
    assert not [p for p in found.packages if "/.venv/" in p.path or "/tools/env" in p.path]


def test_discovery_does_not_follow_directory_symlinks(found: Discovery, monorepo: Path) -> None:
    assert "packages/alias" not in _by_rel(found, monorepo)


def test_discovery_of_a_root_that_is_itself_a_plain_package(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "one", {"setup.cfg": "[metadata]\nname = One.Two\n"})
    found = discover(canonical_root(str(root)))
    assert [(p.path, p.name, p.workspace) for p in found.packages] == [
        (str(root.resolve()), "one-two", None)
    ]


def test_discovery_keeps_a_package_with_invalid_pyproject(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "r", {"bad/pyproject.toml": "[project\n"})
    found = discover(canonical_root(str(root)))
    assert [(Path(p.path).name, p.name) for p in found.packages] == [("bad", None)]


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Foo", "foo"),
        ("foo_bar", "foo-bar"),
        ("Foo.Bar", "foo-bar"),
        ("foo--_.bar", "foo-bar"),
        ("FOO___BAR...BAZ", "foo-bar-baz"),
    ],
)
def test_normalize_name_follows_pep_503(raw: str, normalized: str) -> None:
    assert normalize_name(raw) == normalized


def test_discovery_never_opens_a_fifo_named_like_a_project_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "r", {"ok/pyproject.toml": '[project]\nname = "ok"\n'})
    (root / "odd").mkdir()
    fifo = root / "odd" / "pyproject.toml"
    os.mkfifo(fifo)
    done: list[Discovery] = []
    thread = threading.Thread(target=lambda: done.append(discover(str(root.resolve()))))
    thread.start()
    thread.join(5.0)
    if thread.is_alive():  # blocked opening the FIFO: give it a writer that closes (EOF)
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5.0)
        pytest.fail("discover() opened a FIFO named pyproject.toml and blocked")
    assert "ok" in {Path(p.path).name for p in done[0].packages}


def test_never_entered_says_what_discovery_skips(tmp_path: Path) -> None:
    """The engine's test for a directory that appeared (``never_entered``) and the walk
    of ``discover`` are one rule: a package is found exactly where it says entered."""
    project = '[project]\nname = "p"\n'
    places = [
        "plain/lib",
        ".git/lib",
        "node_modules/lib",
        "x.egg-info/lib",
        "deep/__pycache__/lib",
        "venv/lib",  # venv holds pyvenv.cfg
        "venv/sub/lib",
        "build/lib",  # build/ is pruned only at a package's top, not in a root
        "a/.tox/b/lib",
    ]
    root = make_tree(
        tmp_path / "root",
        {"venv/pyvenv.cfg": "", **{f"{p}/pyproject.toml": project for p in places}},
    )
    found = {p.path for p in discover(str(root)).packages}
    for place in places:
        path = str(root / place)
        assert (path in found) == (not never_entered(path, str(root))), place
    assert not never_entered(str(root), str(root))
