"""Hashing one file: what the digest is valid for, when the file changes while it is read.

A regular file is read through one descriptor and its stat taken with fstat before and
after the read, not with lstat of the path: the record describes the inode that was
read. A file modified meanwhile, or renamed over (the old inode loses its name, which
moves its ctime on Linux), is read again.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from blake3 import blake3

from freshd_client.content.fileset import walk
from freshd_client.content.project import read_project
from freshd_client.content.scan import hash_path, scan
from freshd_client.spec import digest as dg
from freshd_client.spec.identity import RACY_WINDOW_NS


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _old(path: Path) -> None:
    """An mtime well out of the racy window: the stat fast path may reuse its record."""
    past = os.lstat(path).st_mtime_ns - 10 * RACY_WINDOW_NS
    os.utime(path, ns=(past, past), follow_symlinks=False)


def _aged_package(tmp_path: Path, rel: str) -> tuple[Path, Path, int]:
    """Package ``p`` holding ``rel`` (``old = 1``), both files out of the racy window:
    the package, the file and its inode."""
    pkg = tmp_path / "p"
    (pkg / rel).parent.mkdir(parents=True)
    _file(pkg / "pyproject.toml", b'[project]\nname = "p"\n')
    target = _file(pkg / rel, b"old = 1\n")
    for path in (pkg / "pyproject.toml", target):
        _old(path)
    return pkg, target, os.lstat(target).st_ino


@pytest.mark.parametrize("listed", [True, False], ids=["lstat", "listed-only"])
def test_a_file_is_hashed_with_the_stat_of_what_was_read(tmp_path: Path, listed: bool) -> None:
    path = _file(tmp_path / "f.py", b"x = 1\n")
    hashed = hash_path(str(path), os.lstat(path) if listed else None)
    assert hashed is not None
    st, digest = hashed
    assert digest == blake3(b"x = 1\n").digest()
    now = os.lstat(path)
    assert (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode) == (
        now.st_ino,
        now.st_size,
        now.st_mtime_ns,
        now.st_ctime_ns,
        now.st_mode,
    )


def test_a_file_modified_while_it_is_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(tmp_path / "f.py", b"first\n")
    real = dg.hash_open_file
    reads: list[int] = []

    def racing(fd: int, size_hint: int) -> bytes:
        digest = real(fd, size_hint)
        if not reads:  # a writer finishes just after the first read
            with open(path, "ab") as f:
                f.write(b"second\n")
        reads.append(fd)
        return digest

    monkeypatch.setattr(dg, "hash_open_file", racing)
    hashed = hash_path(str(path), None)
    assert hashed is not None and len(reads) == 2
    st, digest = hashed
    assert digest == blake3(b"first\nsecond\n").digest()
    assert st.st_size == len(b"first\nsecond\n")


def test_a_file_renamed_over_while_it_is_read_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editor's atomic save lands while the old file is read: the old inode lost its
    name, which moves its ctime on Linux, so it is read again and the record is the new
    inode's. (Where the ctime would not move, the record would name the old inode: the
    directory-swap case below.)"""
    pkg, target, old_inode = _aged_package(tmp_path, "m.py")
    real = dg.hash_open_file

    def racing(fd: int, size_hint: int) -> bytes:
        digest = real(fd, size_hint)
        if os.fstat(fd).st_ino == old_inode:
            new = _file(pkg / ".m.py.tmp", b"new = 2\n")  # same size, same mtime
            os.utime(new, ns=(os.fstat(fd).st_mtime_ns,) * 2)
            os.replace(new, target)
        return digest

    monkeypatch.setattr(dg, "hash_open_file", racing)
    first = scan(str(pkg))
    monkeypatch.setattr(dg, "hash_open_file", real)
    assert first.error is None, first.error
    record = {r.rel: r for r in first.records}["m.py"]
    assert record.digest == blake3(b"new = 2\n").digest()
    assert record.ino == os.lstat(target).st_ino != old_inode
    assert first.tree == scan(str(pkg)).tree


def test_a_file_whose_directory_is_swapped_while_it_is_read_is_never_reused_for_new_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory is renamed away and another put in its place while a file in it is
    read: the inode that was read is untouched, and its record names it, so no later
    scan reuses that record for the file now at the path (same size, same mtime)."""
    pkg, _target, old_inode = _aged_package(tmp_path, "src/m.py")
    real = dg.hash_open_file

    def racing(fd: int, size_hint: int) -> bytes:
        digest = real(fd, size_hint)
        if os.fstat(fd).st_ino == old_inode and (pkg / "src").exists():
            os.rename(pkg / "src", pkg / "moved")
            (pkg / "src").mkdir()
            new = _file(pkg / "src/m.py", b"new = 2\n")
            os.utime(new, ns=(os.fstat(fd).st_mtime_ns,) * 2)
        return digest

    monkeypatch.setattr(dg, "hash_open_file", racing)
    first = scan(str(pkg))
    monkeypatch.setattr(dg, "hash_open_file", real)
    record = {r.rel: r for r in first.records}["src/m.py"]
    assert (record.ino, record.digest) == (old_inode, blake3(b"old = 1\n").digest())
    # Stored and scanned again with the racy window long past: not reused.
    late = 100 * RACY_WINDOW_NS
    stored = {r.rel: r._replace(hashed_at_ns=r.hashed_at_ns + late) for r in first.records}
    again = scan(str(pkg), stored)
    assert {r.rel: r.digest for r in again.records}["src/m.py"] == blake3(b"new = 2\n").digest()
    assert again.reused == 1  # pyproject.toml only (moved/m.py is new to the file set)


def test_a_listed_file_swapped_for_a_fifo_is_not_read(tmp_path: Path) -> None:
    """Listed as a regular file, not stat'ed, a FIFO when opened: in a subprocess, so a
    read that waits for a writer is a failure, not a hang."""
    code = f"""
import os
from freshd_client.content.scan import hash_path
path = {str(tmp_path / "f.py")!r}
os.mkfifo(path)
print(hash_path(path, None))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "None"), proc.stderr


def test_a_listed_file_swapped_for_a_symlink_is_hashed_as_a_link(tmp_path: Path) -> None:
    (tmp_path / "f.py").symlink_to("elsewhere.py")
    hashed = hash_path(str(tmp_path / "f.py"), None)
    assert hashed is not None
    st, digest = hashed
    assert stat.S_ISLNK(st.st_mode)
    assert digest == dg.link_digest(b"elsewhere.py")


def test_a_listed_file_that_is_gone_or_a_directory_is_none(tmp_path: Path) -> None:
    assert hash_path(str(tmp_path / "gone.py"), None) is None
    (tmp_path / "d").mkdir()
    assert hash_path(str(tmp_path / "d"), None) is None
    # its directory replaced by a file since the listing (a branch switch)
    _file(tmp_path / "was_a_dir", b"")
    for st in (None, os.lstat(tmp_path / "was_a_dir")):
        assert hash_path(str(tmp_path / "was_a_dir" / "f.py"), st) is None


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20])
@pytest.mark.parametrize("hint", [-1, 0, 1], ids=["shrunk", "exact", "grown"])
def test_whole_files_are_hashed_whatever_the_size_hint(
    tmp_path: Path, size: int, hint: int
) -> None:
    data = os.urandom(size)
    path = _file(tmp_path / "f.bin", data)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert dg.hash_open_file(fd, max(size + hint, 0)) == blake3(data).digest()
    finally:
        os.close(fd)


def test_the_walk_stats_only_what_it_must(tmp_path: Path) -> None:
    """lstat_new=False: a new regular file is listed without a stat (the hasher's fstat
    gives its identity); known members, symlinks and special files get their lstat."""
    pkg = tmp_path / "p"
    pkg.mkdir()
    _file(pkg / "pyproject.toml", b'[project]\nname = "p"\n')
    _file(pkg / "new.py", b"")
    _file(pkg / "known.py", b"")
    (pkg / "alias.py").symlink_to("known.py")
    os.mkfifo(pkg / "pipe")
    known = {r.rel: r for r in scan(str(pkg)).records if r.rel == "known.py"}
    walked = walk(str(pkg), read_project(str(pkg)), known, lstat_new=False)
    stats = {f.rel: f.st for f in walked.files}
    assert stats["new.py"] is None and stats["pyproject.toml"] is None
    assert (
        stats["known.py"] is not None
        and stats["known.py"].st_ino == os.lstat(pkg / "known.py").st_ino
    )
    assert stats["alias.py"] is not None and stat.S_ISLNK(stats["alias.py"].st_mode)
    assert walked.skipped == ["pipe (fifo)"]


def test_a_scan_records_hard_links_from_the_hashed_stat(tmp_path: Path) -> None:
    pkg = tmp_path / "p"
    pkg.mkdir()
    _file(pkg / "pyproject.toml", b'[project]\nname = "p"\n')
    _file(pkg / "a.py", b"shared\n")
    os.link(pkg / "a.py", pkg / "b.py")
    result = scan(str(pkg))
    st = os.lstat(pkg / "a.py")
    assert sorted(result.links) == [
        ("a.py", st.st_dev, st.st_ino, 2),
        ("b.py", st.st_dev, st.st_ino, 2),
    ]


def test_no_path_is_stat_ed_after_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read is bracketed by fstat of the descriptor: no lstat of the path follows it
    (one syscall and one path lookup fewer per file)."""
    path = _file(tmp_path / "f.py", b"x\n")
    calls: list[object] = []
    real_lstat = os.lstat

    def counting(p: str, *args: object, **kwargs: object) -> os.stat_result:
        calls.append(p)
        return real_lstat(p)

    monkeypatch.setattr(os, "lstat", counting)
    assert hash_path(str(path), None) is not None
    assert calls == []
