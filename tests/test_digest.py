"""Digest invariants, checked on real files through the one-shot ``digest_path``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import (
    DEMO_FILES,
    PYPROJECT,
    Exec,
    Link,
    Spec,
    make_tree,
    meta_digest,
    oracle_tree_digest,
    tree_digest,
)
from freshd_client.content.oneshot import digest_path

# -- format -------------------------------------------------------------------


def test_digest_text_forms_name_scope_and_version(pkg: Path) -> None:
    tree = tree_digest(pkg)
    meta = meta_digest(pkg)
    assert tree.startswith("b3t2:")
    assert meta.startswith("b3m2:")
    assert len(tree) == len(meta) == 5 + 64
    int(tree[5:], 16)
    int(meta[5:], 16)


def test_tree_digest_matches_independent_oracle(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "plain",
        {
            "pyproject.toml": PYPROJECT,
            "a.py": "a = 1\n",
            "pkg/b.py": "b = 2\n",
            "tool": Exec("#!/bin/sh\n"),
            "alias": Link("a.py"),
            "dirlink": Link("pkg"),
            "empty.txt": "",
        },
    )
    assert tree_digest(root) == oracle_tree_digest(root)


def test_digest_is_deterministic_and_counts_every_file(pkg: Path) -> None:
    first = digest_path(str(pkg), "tree")
    second = digest_path(str(pkg), "tree")
    assert first.tree == second.tree
    # .gitignore, README.md, pyproject.toml, 3 under src/demo, bin/run, core_link.py
    assert sorted(r.rel for r in first.records) == sorted(DEMO_FILES)
    assert first.name == "demo-pkg"


# -- unchanged by metadata-only operations ------------------------------------------


def test_unchanged_by_cp_a_to_another_directory(pkg: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "deeper" / "copy"
    copy.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(pkg), str(copy)], check=True)
    assert os.stat(copy / "README.md").st_ino != os.stat(pkg / "README.md").st_ino
    assert tree_digest(copy) == tree_digest(pkg)
    assert meta_digest(copy) == meta_digest(pkg)


def test_unchanged_by_tar_round_trip(pkg: Path, tmp_path: Path) -> None:
    archive = tmp_path / "demo.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(pkg, arcname="demo")
    target = tmp_path / "extracted"
    target.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="tar")
    extracted = target / "demo"
    assert (extracted / "core_link.py").is_symlink()
    assert os.stat(extracted / "README.md").st_ino != os.stat(pkg / "README.md").st_ino
    assert tree_digest(extracted) == tree_digest(pkg)
    assert meta_digest(extracted) == meta_digest(pkg)


def test_unchanged_by_touching_every_file(pkg: Path) -> None:
    tree, meta = tree_digest(pkg), meta_digest(pkg)
    for when_ns in (1_000_000_000, 4_000_000_000_000_000_000):  # 1970 and far future
        for path in [pkg, *pkg.rglob("*")]:
            os.utime(path, ns=(when_ns, when_ns), follow_symlinks=False)
        assert tree_digest(pkg) == tree
        assert meta_digest(pkg) == meta


@pytest.mark.parametrize(
    ("rel", "before", "after"),
    [("README.md", 0o644, 0o640), ("bin/run", 0o755, 0o700), ("bin/run", 0o755, 0o711)],
)
def test_unchanged_by_chmod_that_keeps_the_executable_bit(
    pkg: Path, rel: str, before: int, after: int
) -> None:
    (pkg / rel).chmod(before)
    tree = tree_digest(pkg)
    (pkg / rel).chmod(after)
    assert tree_digest(pkg) == tree


IGNORED_ADDITIONS: dict[str, dict[str, Spec]] = {
    "pycache": {"src/demo/__pycache__/core.cpython-311.pyc": b"\x00bytecode"},
    "stray-pyc": {"src/demo/core.pyc": b"\x00bytecode", "src/demo/old.pyo": b"\x00"},
    "dot-venv": {".venv/pyvenv.cfg": "home = /usr\n", ".venv/lib/site.py": "x = 1\n"},
    "venv-any-name": {"myenv/pyvenv.cfg": "home = /usr\n", "myenv/bin/python": Exec("")},
    "gitignored-file": {"debug.log": "noise\n", "src/demo/trace.log": "noise\n"},
    "top-build": {"build/lib/demo/core.py": "copy\n"},
    "top-dist": {"dist/demo-0.1.0.tar.gz": b"\x1f\x8b"},
    "egg-info": {"src/Demo_Pkg.egg-info/PKG-INFO": "Name: demo\n"},
    "git-dir": {".git/HEAD": "ref: refs/heads/main\n", ".git/config": "[core]\n"},
    "tool-caches": {
        ".tox/py311/log.txt": "x",
        ".nox/s/log.txt": "x",
        ".mypy_cache/3.11/x.json": "{}",
        ".pytest_cache/v/cache": "x",
        ".ruff_cache/x": "x",
        "node_modules/left-pad/index.js": "x",
    },
}


@pytest.mark.parametrize("files", IGNORED_ADDITIONS.values(), ids=IGNORED_ADDITIONS.keys())
def test_unchanged_by_adding_excluded_files(pkg: Path, files: dict[str, Spec]) -> None:
    tree, meta = tree_digest(pkg), meta_digest(pkg)
    make_tree(pkg, files)
    assert tree_digest(pkg) == tree
    assert meta_digest(pkg) == meta


def test_build_dir_below_the_top_is_part_of_the_tree(pkg: Path) -> None:
    tree = tree_digest(pkg)
    make_tree(pkg, {"src/demo/build/helper.py": "x = 1\n"})
    assert tree_digest(pkg) != tree


def test_gitignore_outside_the_package_does_not_apply(tmp_path: Path) -> None:
    files: dict[str, Spec] = {"pyproject.toml": PYPROJECT, "mod.py": "x = 1\n"}
    alone = make_tree(tmp_path / "alone" / "demo", files)
    under = make_tree(tmp_path / "repo" / "demo", files)
    make_tree(tmp_path / "repo", {".gitignore": "*.py\n"})
    assert tree_digest(under) == tree_digest(alone)


# -- changed by content changes ---------------------------------------------------------


@pytest.mark.parametrize(
    "rel", ["README.md", "src/demo/core.py", "src/demo/data.bin", "bin/run", "pyproject.toml"]
)
def test_changed_by_any_content_edit(pkg: Path, rel: str) -> None:
    tree = tree_digest(pkg)
    path = pkg / rel
    path.write_bytes(path.read_bytes() + b"\n# edited\n")
    assert tree_digest(pkg) != tree


def test_changed_by_same_size_edit_with_restored_timestamps(pkg: Path) -> None:
    path = pkg / "src/demo/core.py"
    tree = tree_digest(pkg)
    st = path.stat()
    path.write_bytes(path.read_bytes().replace(b"42", b"43"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    assert tree_digest(pkg) != tree


def test_changed_by_an_added_file(pkg: Path) -> None:
    tree = tree_digest(pkg)
    make_tree(pkg, {"src/demo/new.py": ""})
    assert tree_digest(pkg) != tree


def test_changed_by_an_added_empty_file_in_a_new_directory(pkg: Path) -> None:
    tree = tree_digest(pkg)
    make_tree(pkg, {"extra/dir/__init__.py": ""})
    assert tree_digest(pkg) != tree


def test_unchanged_by_an_added_empty_directory(pkg: Path) -> None:
    tree = tree_digest(pkg)
    (pkg / "src/demo/empty").mkdir()
    assert tree_digest(pkg) == tree


def test_changed_by_a_removed_file(pkg: Path) -> None:
    tree = tree_digest(pkg)
    (pkg / "README.md").unlink()
    assert tree_digest(pkg) != tree


def test_changed_by_a_renamed_file(pkg: Path) -> None:
    tree = tree_digest(pkg)
    (pkg / "src/demo/core.py").rename(pkg / "src/demo/kernel.py")
    renamed = tree_digest(pkg)
    assert renamed != tree
    (pkg / "src/demo/kernel.py").rename(pkg / "src/demo/core.py")
    assert tree_digest(pkg) == tree


def test_changed_by_moving_a_file_to_another_directory(pkg: Path) -> None:
    tree = tree_digest(pkg)
    (pkg / "README.md").rename(pkg / "src/README.md")
    assert tree_digest(pkg) != tree


@pytest.mark.parametrize(
    ("rel", "before", "after"), [("README.md", 0o644, 0o744), ("bin/run", 0o755, 0o644)]
)
def test_changed_by_a_changed_executable_bit(pkg: Path, rel: str, before: int, after: int) -> None:
    (pkg / rel).chmod(before)
    tree = tree_digest(pkg)
    (pkg / rel).chmod(after)
    assert tree_digest(pkg) != tree


def test_changed_by_a_changed_symlink_target(pkg: Path) -> None:
    tree = tree_digest(pkg)
    link = pkg / "core_link.py"
    link.unlink()
    link.symlink_to("src/demo/__init__.py")
    assert tree_digest(pkg) != tree


def test_symlink_digest_depends_on_target_string_not_target_content(pkg: Path) -> None:
    tree = tree_digest(pkg)
    (pkg / "src/demo/core.py").write_text("changed\n")
    changed = tree_digest(pkg)
    # The file itself changed, so the tree changes; restoring it restores the digest
    # even though the link was never touched.
    assert changed != tree
    (pkg / "src/demo/core.py").write_text(DEMO_FILES["src/demo/core.py"])  # type: ignore[arg-type]
    assert tree_digest(pkg) == tree


def test_file_and_symlink_with_same_bytes_differ(tmp_path: Path) -> None:
    as_file = make_tree(tmp_path / "f", {"pyproject.toml": PYPROJECT, "x": "target"})
    as_link = make_tree(tmp_path / "l", {"pyproject.toml": PYPROJECT, "x": Link("target")})
    assert tree_digest(as_file) != tree_digest(as_link)


# -- nested packages ------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["pyproject.toml", "setup.py", "setup.cfg"])
def test_nested_package_does_not_affect_outer_digest(pkg: Path, marker: str) -> None:
    make_tree(pkg, {f"plugins/extra/{marker}": "", "plugins/extra/mod.py": "x = 1\n"})
    tree, meta = tree_digest(pkg), meta_digest(pkg)
    (pkg / "plugins/extra/mod.py").write_text("x = 2\n")
    make_tree(pkg, {"plugins/extra/new.py": "", "plugins/extra/sub/deep.py": ""})
    assert tree_digest(pkg) == tree
    assert meta_digest(pkg) == meta
    inner = tree_digest(pkg / "plugins/extra")
    (pkg / "plugins/extra/mod.py").write_text("x = 3\n")
    assert tree_digest(pkg / "plugins/extra") != inner


def test_removing_nested_package_marker_adds_its_files_to_outer(pkg: Path) -> None:
    make_tree(pkg, {"plugins/extra/pyproject.toml": PYPROJECT, "plugins/extra/mod.py": ""})
    tree = tree_digest(pkg)
    (pkg / "plugins/extra/pyproject.toml").unlink()
    assert tree_digest(pkg) != tree


# -- meta scope -----------------------------------------------------------------------


def test_meta_unchanged_by_source_edit(pkg: Path) -> None:
    meta = meta_digest(pkg)
    (pkg / "src/demo/core.py").write_text("def answer():\n    return 0\n")
    make_tree(pkg, {"src/demo/new.py": "", "README.md": "changed\n"})
    assert meta_digest(pkg) == meta


def test_meta_changed_by_pyproject_edit(pkg: Path) -> None:
    meta = meta_digest(pkg)
    (pkg / "pyproject.toml").write_text(PYPROJECT + 'description = "more"\n')
    assert meta_digest(pkg) != meta


@pytest.mark.parametrize("marker", ["setup.py", "setup.cfg"])
def test_meta_changed_by_setup_file_creation_and_edit(pkg: Path, marker: str) -> None:
    meta = meta_digest(pkg)
    make_tree(pkg, {marker: "# one\n"})
    created = meta_digest(pkg)
    assert created != meta
    (pkg / marker).write_text("# two\n")
    assert meta_digest(pkg) not in (meta, created)


def test_meta_changed_by_creating_and_removing_src(tmp_path: Path) -> None:
    flat = make_tree(tmp_path / "flat", {"pyproject.toml": PYPROJECT, "flat.py": ""})
    meta = meta_digest(flat)
    (flat / "src").mkdir()
    with_src = meta_digest(flat)
    assert with_src != meta
    (flat / "src").rmdir()
    assert meta_digest(flat) == meta


def test_meta_does_not_depend_on_location(pkg: Path, tmp_path: Path) -> None:
    copy = tmp_path / "other" / "place"
    shutil.copytree(pkg, copy, symlinks=True)
    assert meta_digest(copy) == meta_digest(pkg)


CACHE_KEYS_PYPROJECT = """\
[project]
name = "keyed"

[tool.uv]
cache-keys = [{ file = "VERSION" }, "requirements/base.txt", { dir = "assets" }]
"""


@pytest.fixture
def keyed(tmp_path: Path) -> Path:
    return make_tree(
        tmp_path / "keyed",
        {
            "pyproject.toml": CACHE_KEYS_PYPROJECT,
            "VERSION": "1.0\n",
            "requirements/base.txt": "requests\n",
            "requirements/notes.md": "not a key\n",
            "src/keyed/__init__.py": "",
        },
    )


def test_meta_cache_keys_file_glob_counts_content(tmp_path: Path) -> None:
    text = '[project]\nname = "g"\n[tool.uv]\ncache-keys = [{ file = "requirements/*.txt" }]\n'
    root = make_tree(
        tmp_path / "g",
        {
            "pyproject.toml": text,
            "requirements/base.txt": "requests\n",
            "requirements/notes.md": "not a key\n",
        },
    )
    meta = meta_digest(root)
    (root / "requirements/base.txt").write_text("requests>=2\n")
    edited = meta_digest(root)
    assert edited != meta
    make_tree(root, {"requirements/dev.txt": "pytest\n"})
    added = meta_digest(root)
    assert added not in (meta, edited)
    (root / "requirements/notes.md").write_text("still not a key\n")
    assert meta_digest(root) == added


@pytest.mark.parametrize("rel", ["VERSION", "requirements/base.txt"])
def test_meta_cache_keys_plain_file_counts_content(keyed: Path, rel: str) -> None:
    meta = meta_digest(keyed)
    (keyed / rel).write_text("changed\n")
    changed = meta_digest(keyed)
    assert changed != meta
    (keyed / rel).unlink()
    assert meta_digest(keyed) not in (meta, changed)


def test_meta_cache_keys_dir_counts_existence_only(keyed: Path) -> None:
    meta = meta_digest(keyed)
    (keyed / "assets").mkdir()
    exists = meta_digest(keyed)
    assert exists != meta
    make_tree(keyed, {"assets/logo.svg": "<svg/>"})
    assert meta_digest(keyed) == exists
    shutil.rmtree(keyed / "assets")
    assert meta_digest(keyed) == meta


def test_meta_with_cache_keys_ignores_unlisted_defaults(keyed: Path) -> None:
    meta = meta_digest(keyed)
    (keyed / "pyproject.toml").write_text(CACHE_KEYS_PYPROJECT + "# a comment\n")
    make_tree(keyed, {"setup.py": "# not a key any more\n", "setup.cfg": "[metadata]\n"})
    shutil.rmtree(keyed / "src")
    assert meta_digest(keyed) == meta


def test_meta_with_cache_keys_counts_pyproject_when_listed(tmp_path: Path) -> None:
    text = '[project]\nname = "k"\n[tool.uv]\ncache-keys = [{ file = "pyproject.toml" }]\n'
    root = make_tree(tmp_path / "k", {"pyproject.toml": text})
    meta = meta_digest(root)
    (root / "pyproject.toml").write_text(text + "# a comment\n")
    assert meta_digest(root) != meta


def test_meta_and_tree_digests_differ(pkg: Path) -> None:
    assert meta_digest(pkg)[5:] != tree_digest(pkg)[5:]


# -- [tool.freshd] include / exclude -----------------------------------------------------

FRESHD_PYPROJECT = """\
[project]
name = "tuned"

[tool.freshd]
exclude = ["*.dat", "scratch/"]
include = ["build/keep.txt", "debug.log", "src/tuned/__pycache__/keep.pyc"]
"""


@pytest.fixture
def tuned(tmp_path: Path) -> Path:
    return make_tree(
        tmp_path / "tuned",
        {
            "pyproject.toml": FRESHD_PYPROJECT,
            ".gitignore": "*.log\n",
            "src/tuned/__init__.py": "",
            "build/keep.txt": "kept\n",
            "build/other.txt": "dropped\n",
            "debug.log": "kept\n",
            "other.log": "dropped\n",
            "src/tuned/__pycache__/keep.pyc": b"\x00",
            "src/tuned/__pycache__/drop.pyc": b"\x00",
        },
    )


def test_freshd_exclude_drops_matching_paths(tuned: Path) -> None:
    tree = tree_digest(tuned)
    make_tree(tuned, {"big.dat": b"\x00" * 100, "src/tuned/x.dat": "", "scratch/notes.txt": "n"})
    assert tree_digest(tuned) == tree
    make_tree(tuned, {"x.txt": ""})
    assert tree_digest(tuned) != tree


@pytest.mark.parametrize("rel", ["build/keep.txt", "debug.log", "src/tuned/__pycache__/keep.pyc"])
def test_freshd_include_readmits_soft_exclusions(tuned: Path, rel: str) -> None:
    tree = tree_digest(tuned)
    (tuned / rel).write_text("edited\n")
    assert tree_digest(tuned) != tree


@pytest.mark.parametrize("rel", ["build/other.txt", "other.log", "src/tuned/__pycache__/drop.pyc"])
def test_freshd_include_leaves_other_exclusions_alone(tuned: Path, rel: str) -> None:
    tree = tree_digest(tuned)
    (tuned / rel).write_text("edited\n")
    assert tree_digest(tuned) == tree


def test_freshd_include_cannot_readmit_hard_exclusions(tmp_path: Path) -> None:
    text = '[project]\nname = "h"\n[tool.freshd]\ninclude = [".git/**", ".venv/**", "*"]\n'
    root = make_tree(tmp_path / "h", {"pyproject.toml": text, "mod.py": ""})
    tree = tree_digest(root)
    make_tree(root, {".git/HEAD": "x", ".venv/pyvenv.cfg": "", ".venv/lib.py": ""})
    assert tree_digest(root) == tree


# -- .gitignore ---------------------------------------------------------------------------


def _gitignored(tmp_path: Path, files: dict[str, Spec]) -> Path:
    return make_tree(tmp_path / "gi", {"pyproject.toml": PYPROJECT, **files})


def test_gitignore_negation_keeps_a_file(tmp_path: Path) -> None:
    root = _gitignored(
        tmp_path, {".gitignore": "*.log\n!keep.log\n", "keep.log": "a", "x.log": "a"}
    )
    tree = tree_digest(root)
    (root / "x.log").write_text("b")
    assert tree_digest(root) == tree
    (root / "keep.log").write_text("b")
    assert tree_digest(root) != tree


def test_deeper_gitignore_overrides_shallower(tmp_path: Path) -> None:
    root = _gitignored(
        tmp_path,
        {
            ".gitignore": "*.log\n",
            "important.log": "a",
            "sub/.gitignore": "!important.log\n*.tmp\n",
            "sub/important.log": "a",
            "sub/other.log": "a",
            "sub/x.tmp": "a",
            "x.tmp": "a",
        },
    )
    tree = tree_digest(root)
    for ignored in ("important.log", "sub/other.log", "sub/x.tmp"):
        (root / ignored).write_text("b")
        assert tree_digest(root) == tree, ignored
    for counted in ("sub/important.log", "x.tmp"):
        (root / counted).write_text("b")
        changed = tree_digest(root)
        assert changed != tree, counted
        tree = changed


def test_gitignore_directory_pattern_matches_directories_only(tmp_path: Path) -> None:
    root = _gitignored(
        tmp_path,
        {".gitignore": "out/\n", "out/a.txt": "a", "sub/out/b.txt": "a", "docs/out": "a"},
    )
    tree = tree_digest(root)
    (root / "out/a.txt").write_text("b")
    (root / "sub/out/b.txt").write_text("b")
    assert tree_digest(root) == tree
    (root / "docs/out").write_text("b")
    assert tree_digest(root) != tree


def test_gitignore_file_itself_counts(pkg: Path) -> None:
    tree = tree_digest(pkg)
    (pkg / ".gitignore").write_text("*.log\n*.tmp\n")
    assert tree_digest(pkg) != tree


def test_meta_cache_key_through_a_symlink_counts_the_target_content(tmp_path: Path) -> None:
    """uv reads a key through a symlink (its target's timestamp): freshd its content."""
    make_tree(tmp_path, {"shared/VERSION": "1\n"})
    text = '[project]\nname = "l"\n[tool.uv]\ncache-keys = ["VERSION", "../shared/VERSION"]\n'
    root = make_tree(tmp_path / "l", {"pyproject.toml": text, "VERSION": Link("../shared/VERSION")})
    meta = meta_digest(root)
    (tmp_path / "shared" / "VERSION").write_text("2\n")
    assert meta_digest(root) != meta
    entries = {e.path for e in digest_path(str(root), "meta").meta_entries}
    assert entries == {b"VERSION", b"../shared/VERSION"}
