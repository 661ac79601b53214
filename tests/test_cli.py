"""The real ``freshd`` console script: output, one-line errors, and the index round trip."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from conftest import PYPROJECT, Exec, Link, make_tree, oracle_tree_digest, wait_out_racy_window
from freshd.index import Index
from freshd_client.oneshot import digest_path

FRESHD = str(Path(sys.executable).parent / "freshd")
DEADLINE = 60.0
NOBODY = 65534


def run(
    *args: str, prefix: Sequence[str] = (), cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, FRESHD, *args],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=DEADLINE,
        cwd=cwd,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    return lines[0]


# -- digest -------------------------------------------------------------------------------


def test_digest_prints_the_tree_digest(pkg: Path) -> None:
    proc = run("digest", str(pkg))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == digest_path(str(pkg)).tree + "\n"
    assert proc.stderr == ""


def test_digest_meta_scope(pkg: Path) -> None:
    proc = run("digest", str(pkg), "--scope", "meta")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == digest_path(str(pkg), "meta").meta
    assert proc.stdout.startswith("b3m2:")


def test_digest_of_relative_path(pkg: Path) -> None:
    proc = run("digest", pkg.name, cwd=pkg.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == digest_path(str(pkg)).tree


def test_digest_json(pkg: Path) -> None:
    proc = run("digest", str(pkg), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data == {
        "path": str(pkg.resolve()),
        "name": "demo-pkg",
        "scope": "tree",
        "digest": digest_path(str(pkg)).tree,
        "files": 8,
        "skipped": [],
        "notes": [],
    }


def test_digest_json_meta_scope(pkg: Path) -> None:
    data = json.loads(run("digest", str(pkg), "--scope", "meta", "--json").stdout)
    assert data["scope"] == "meta"
    assert data["digest"] == digest_path(str(pkg), "meta").meta


def test_digest_error_missing_path(tmp_path: Path) -> None:
    line = assert_one_line_error(run("digest", str(tmp_path / "nope")))
    assert "nope" in line


def test_digest_error_file_instead_of_directory(pkg: Path) -> None:
    line = assert_one_line_error(run("digest", str(pkg / "README.md")))
    assert "not a directory" in line


def test_digest_error_directory_that_is_not_a_package(tmp_path: Path) -> None:
    make_tree(tmp_path / "plain", {"README.md": "", "src/x.py": ""})
    line = assert_one_line_error(run("digest", str(tmp_path / "plain")))
    assert "not a package" in line


def test_digest_error_invalid_toml(tmp_path: Path) -> None:
    make_tree(tmp_path / "bad", {"pyproject.toml": '[project\nname = "x"\n'})
    line = assert_one_line_error(run("digest", str(tmp_path / "bad")))
    assert "pyproject.toml" in line
    assert "TOML" in line


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary directory every user can enter (tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="freshd-cli-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _as_unprivileged() -> list[str]:
    # root bypasses permission bits, so run the CLI as nobody when we are root.
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed to drop privileges"
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.mark.parametrize("unreadable", ["src/demo/secret.py", "src/demo/locked", ".gitignore"])
def test_digest_error_unreadable_file_or_directory(shared_tmp: Path, unreadable: str) -> None:
    root = make_tree(
        shared_tmp / "demo",
        {
            "pyproject.toml": PYPROJECT,
            ".gitignore": "*.log\n",
            "src/demo/__init__.py": "",
            "src/demo/secret.py": "s = 1\n",
            "src/demo/locked/inner.py": "",
        },
    )
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (root / unreadable).chmod(0o000)
    proc = run("digest", str(root), prefix=_as_unprivileged(), cwd=shared_tmp)
    line = assert_one_line_error(proc)
    assert str(root / unreadable) in line
    assert "Permission denied" in line


def test_digest_fifo_inside_package_succeeds_with_a_note(pkg: Path) -> None:
    baseline = digest_path(str(pkg)).tree
    os.mkfifo(pkg / "src" / "pipe")
    proc = run("digest", str(pkg))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == baseline
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("note: ")
    assert "src/pipe" in lines[0]


def test_digest_json_lists_skipped_socket(pkg: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(pkg)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("s.sock")
        proc = run("digest", str(pkg), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["skipped"] == ["s.sock (socket)"]
    assert proc.stderr.startswith("note: ")


def test_digest_symlink_loop(pkg: Path) -> None:
    make_tree(pkg, {"loop": Link("loop"), "a": Link("b"), "b": Link("a"), "up": Link(".")})
    proc = run("digest", str(pkg), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["files"] == 8 + 4
    assert data["digest"] == digest_path(str(pkg)).tree


def test_digest_non_utf8_file_name(pkg: Path) -> None:
    fd = os.open(os.fsencode(pkg) + b"/src/demo/caf\xe9.py", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    expected = digest_path(str(pkg)).tree
    text = run("digest", str(pkg))
    assert text.returncode == 0, text.stderr
    assert text.stdout.strip() == expected
    as_json = run("digest", str(pkg), "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["digest"] == expected


def test_digest_non_utf8_fifo_name_note(pkg: Path) -> None:
    os.mkfifo(os.fsencode(pkg) + b"/pipe\xff")
    proc = run("digest", str(pkg), "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("note: ")
    assert len(json.loads(proc.stdout)["skipped"]) == 1


# -- index --------------------------------------------------------------------------------


def make_old(root: Path) -> None:
    """Set every mtime 10 s in the past, then wait until every ctime (which that moved)
    is outside the racy window of the next scan too: a stored hash is reused only then."""
    old = time.time_ns() - 10_000_000_000
    for path in [root, *root.rglob("*")]:
        os.utime(path, ns=(old, old), follow_symlinks=False)
    wait_out_racy_window(root)


@pytest.fixture
def mono(tmp_path: Path) -> Path:
    root = make_tree(
        tmp_path / "mono",
        {
            "alpha/pyproject.toml": '[project]\nname = "Alpha"\n',
            "alpha/src/alpha/__init__.py": "A = 1\n",
            "alpha/bin/tool": Exec("#!/bin/sh\n"),
            "beta/setup.py": "from setuptools import setup\nsetup()\n",
            "beta/beta.py": "B = 2\n",
            "beta/link.py": Link("beta.py"),
            "notes/README.md": "not a package\n",
        },
    )
    make_old(root)
    return root


def index(*roots: Path, db: Path, workers: int = 1) -> dict[str, Any]:
    proc = run("index", *map(str, roots), "--db", str(db), "--json", "--workers", str(workers))
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def assert_index_matches_oracle(db: Path, roots: Sequence[Path]) -> None:
    """Every indexed digest equals a from-scratch recomputation."""
    with Index(str(db)) as idx:
        records = idx.packages()
    assert records
    for record in records:
        assert record.state == "clean", record
        assert record.error is None
        assert record.tree == digest_path(record.path, "tree").tree
        assert record.tree == oracle_tree_digest(Path(record.path))
        assert record.meta == digest_path(record.path, "meta").meta
        assert record.files == len(digest_path(record.path).records)
        assert any(record.path.startswith(str(r.resolve())) for r in roots)


def test_index_counts_packages_and_files(mono: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    data = index(mono, db=db)
    assert data["packages"] == 2
    assert data["files"] == 6
    assert data["hashed"] == 6
    assert data["reused"] == 0
    assert data["removed"] == 0
    assert data["errors"] == []
    assert data["roots"] == [str(mono.resolve())]
    assert data["index"] == str(db)
    assert_index_matches_oracle(db, [mono])


def test_index_rerun_reuses_every_hash(mono: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    index(mono, db=db)
    with Index(str(db)) as idx:
        generations = {r.path: r.generation for r in idx.packages()}
    again = index(mono, db=db)
    assert (again["hashed"], again["reused"], again["files"]) == (0, 6, 6)
    with Index(str(db)) as idx:
        assert {r.path: r.generation for r in idx.packages()} == generations
    assert_index_matches_oracle(db, [mono])


def test_index_rehashes_exactly_the_edited_file(mono: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    index(mono, db=db)
    with Index(str(db)) as idx:
        before = {r.path: r.tree for r in idx.packages()}
    (mono / "beta" / "beta.py").write_text("B = 3\n")
    data = index(mono, db=db)
    assert (data["hashed"], data["reused"]) == (1, 5)
    with Index(str(db)) as idx:
        after = {r.path: r.tree for r in idx.packages()}
    beta = str((mono / "beta").resolve())
    assert after[beta] != before[beta]
    assert {p: t for p, t in after.items() if p != beta} == {
        p: t for p, t in before.items() if p != beta
    }
    assert_index_matches_oracle(db, [mono])


def test_index_detects_same_size_edit_with_restored_mtime(mono: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    index(mono, db=db)
    path = mono / "alpha" / "src" / "alpha" / "__init__.py"
    st = path.stat()
    path.write_text("A = 9\n")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    data = index(mono, db=db)
    assert data["hashed"] == 1
    assert_index_matches_oracle(db, [mono])


def test_index_forgets_removed_packages(mono: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    index(mono, db=db)
    shutil.rmtree(mono / "beta")
    data = index(mono, db=db)
    assert (data["packages"], data["removed"]) == (1, 1)
    assert_index_matches_oracle(db, [mono])


def test_index_with_worker_processes(mono: Path, tmp_path: Path) -> None:
    db = tmp_path / "db"
    data = index(mono, db=db, workers=2)
    assert (data["packages"], data["files"], data["hashed"]) == (2, 6, 6)
    assert index(mono, db=db, workers=2)["hashed"] == 0
    assert_index_matches_oracle(db, [mono])


def test_index_non_utf8_names(mono: Path, tmp_path: Path) -> None:
    fd = os.open(os.fsencode(mono) + b"/alpha/d\xe9j\xe0.py", os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    db = tmp_path / "db"
    assert index(mono, db=db)["files"] == 7
    assert_index_matches_oracle(db, [mono])


def test_index_error_missing_root(tmp_path: Path) -> None:
    line = assert_one_line_error(run("index", str(tmp_path / "nope"), "--db", str(tmp_path / "db")))
    assert "nope" in line


def test_index_in_a_directory_it_cannot_write_is_a_one_line_error(shared_tmp: Path) -> None:
    root = make_tree(shared_tmp / "src" / "demo", {"pyproject.toml": PYPROJECT})
    db = shared_tmp / "db"
    db.mkdir()
    for path in [shared_tmp, *shared_tmp.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    db.chmod(0o555)
    if os.geteuid() == 0:
        os.chown(db, NOBODY, NOBODY)  # nobody's own, or it is refused as another user's index
    proc = run("index", str(root), "--db", str(db), prefix=_as_unprivileged(), cwd=shared_tmp)
    line = assert_one_line_error(proc)
    assert str(db) in line
    assert "Permission denied" in line


@pytest.mark.parametrize("value", ["root", "0,", "-1", "1 2"])
def test_serve_allow_uid_takes_numeric_uids_only(tmp_path: Path, value: str) -> None:
    proc = run("serve", str(tmp_path), "--db", str(tmp_path / "db"), "--allow-uid", value)
    line = assert_one_line_error(proc)
    assert line == (
        f"Error: Config '--allow-uid' has value {value!r}. "
        "Expected numeric user ids, comma-separated: 0,1001."
    ), line


def test_an_empty_root_is_refused(tmp_path: Path) -> None:
    """An unset "$ROOT" must not watch the current directory."""
    line = assert_one_line_error(
        run("serve", "", "--db", str(tmp_path / "db"), "--socket", str(tmp_path / "s.sock"))
    )
    assert "empty path" in line
    assert not (tmp_path / "db").exists()
    assert "empty path" in assert_one_line_error(run("digest", ""))
