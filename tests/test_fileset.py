"""The file-set walk: links are recorded not followed, special files are never opened."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from blake3 import blake3

from conftest import PYPROJECT, Link, make_tree, oracle_tree_digest, tree_digest
from freshd_client.content.fileset import Walk, walk
from freshd_client.content.oneshot import digest_path
from freshd_client.content.project import read_project
from freshd_client.content.scan import scan
from freshd_client.spec import digest as dg

T = TypeVar("T")
DEADLINE = 5.0


def walk_package(root: Path) -> Walk:
    return walk(str(root), read_project(str(root)))


def rels(result: Walk) -> set[str]:
    return {f.rel for f in result.files}


def _release_fifo(fifo: Path) -> None:
    """Give a reader blocked in open() on ``fifo`` a writer that closes at once (EOF)."""
    with contextlib.suppress(OSError):  # ENXIO: nobody is waiting to read
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def promptly(fn: Callable[[], T], fifos: tuple[Path, ...] = ()) -> T:
    """Run ``fn`` in a thread; fail (and unblock it) unless it returns within DEADLINE."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed back to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    if thread.is_alive():
        for fifo in fifos:
            _release_fifo(fifo)
        thread.join(DEADLINE)
        pytest.fail(f"did not return within {DEADLINE} s: something opened a FIFO")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


@pytest.fixture
def unix_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Path], None]]:
    sockets: list[socket.socket] = []

    def bind(path: Path) -> None:
        # Bind by a short relative name: AF_UNIX paths are limited to 108 bytes.
        monkeypatch.chdir(path.parent)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path.name)
        sockets.append(sock)

    yield bind
    for sock in sockets:
        sock.close()


# -- symlinks -----------------------------------------------------------------------------


def test_symlink_is_recorded_as_a_link_with_its_target_string(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "p", {"pyproject.toml": PYPROJECT, "real.py": "x", "alias.py": Link("real.py")}
    )
    walked = {f.rel: f for f in walk_package(root).files}
    assert stat.S_ISLNK(walked["alias.py"].st.st_mode)
    records = {r.rel: r for r in digest_path(str(root)).records}
    assert records["alias.py"].kind == dg.KIND_LINK
    assert records["alias.py"].digest == blake3(b"real.py").digest()
    assert records["real.py"].kind == dg.KIND_FILE


def test_symlink_to_a_directory_outside_the_tree_is_one_link_entry(tmp_path: Path) -> None:
    outside = make_tree(tmp_path / "outside", {"secret.py": "s = 1\n", "deep/more.py": ""})
    root = make_tree(
        tmp_path / "p",
        {"pyproject.toml": PYPROJECT, "ext": Link(str(outside)), "rel_ext": Link("../outside")},
    )
    assert rels(walk_package(root)) == {"pyproject.toml", "ext", "rel_ext"}
    tree = tree_digest(root)
    (outside / "secret.py").write_text("s = 2\n")
    make_tree(outside, {"added.py": ""})
    assert tree_digest(root) == tree
    assert tree == oracle_tree_digest(root)


def test_dangling_symlink_is_a_link_entry(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "p", {"pyproject.toml": PYPROJECT, "gone": Link("missing/file")})
    assert rels(walk_package(root)) == {"pyproject.toml", "gone"}
    assert tree_digest(root) == oracle_tree_digest(root)


def test_symlink_loops_are_link_entries(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "p",
        {
            "pyproject.toml": PYPROJECT,
            "self": Link("self"),
            "a": Link("b"),
            "b": Link("a"),
            "sub/up": Link(".."),
            "here": Link("."),
        },
    )
    walked = promptly(lambda: walk_package(root))
    assert rels(walked) == {"pyproject.toml", "self", "a", "b", "sub/up", "here"}
    assert walked.errors == []
    result = promptly(lambda: digest_path(str(root)))
    assert {r.rel: r.kind for r in result.records if r.rel != "pyproject.toml"} == dict.fromkeys(
        ("self", "a", "b", "sub/up", "here"), dg.KIND_LINK
    )
    assert result.tree == oracle_tree_digest(root)


# -- special files -----------------------------------------------------------------------


def test_fifo_and_socket_are_skipped_and_never_opened(
    tmp_path: Path, unix_socket: Callable[[Path], None]
) -> None:
    root = make_tree(tmp_path / "p", {"pyproject.toml": PYPROJECT, "mod.py": "", "sub/x.py": ""})
    baseline = tree_digest(root)
    os.mkfifo(root / "pipe")
    os.mkfifo(root / "sub" / "pipe2")
    unix_socket(root / "sock")
    fifos = (root / "pipe", root / "sub" / "pipe2")

    walked = promptly(lambda: walk_package(root), fifos)
    assert rels(walked) == {"pyproject.toml", "mod.py", "sub/x.py"}
    assert sorted(walked.skipped) == ["pipe (fifo)", "sock (socket)", "sub/pipe2 (fifo)"]

    result = promptly(lambda: digest_path(str(root)), fifos)
    assert result.tree == baseline
    assert sorted(result.skipped) == sorted(walked.skipped)
    meta = promptly(lambda: digest_path(str(root), "meta"), fifos)
    assert meta.meta is not None


@pytest.mark.parametrize("name", [".gitignore", "sub/.gitignore"])
def test_fifo_named_gitignore_is_never_opened(tmp_path: Path, name: str) -> None:
    root = make_tree(tmp_path / "p", {"pyproject.toml": PYPROJECT, "mod.py": "", "sub/x.py": ""})
    os.mkfifo(root / name)
    walked = promptly(lambda: walk_package(root), (root / name,))
    assert f"{name} (fifo)" in walked.skipped
    assert "mod.py" in rels(walked)


def test_fifo_named_setup_cfg_is_never_opened(tmp_path: Path) -> None:
    # A setup.py package without a pyproject name: freshd looks in setup.cfg for the name.
    root = make_tree(tmp_path / "p", {"setup.py": "from setuptools import setup\nsetup()\n"})
    os.mkfifo(root / "setup.cfg")
    fifos = (root / "setup.cfg",)
    tree = promptly(lambda: digest_path(str(root), "tree"), fifos)
    assert tree.skipped == ["setup.cfg (fifo)"]
    assert [r.rel for r in tree.records] == ["setup.py"]
    meta = promptly(lambda: digest_path(str(root), "meta"), fifos)
    assert meta.meta is not None


# -- non-UTF-8 names -------------------------------------------------------------------------


def _write_raw(path: bytes, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_non_utf8_file_names_give_a_stable_digest(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "p", {"pyproject.toml": PYPROJECT})
    base = os.fsencode(root)
    _write_raw(base + b"/caf\xe9.py", b"latin-1 name\n")
    os.mkdir(base + b"/d\xff\xfe")
    _write_raw(base + b"/d\xff\xfe/x.py", b"in a non-UTF-8 directory\n")

    walked = walk_package(root)
    assert {os.fsencode(r) for r in rels(walked)} == {
        b"pyproject.toml",
        b"caf\xe9.py",
        b"d\xff\xfe/x.py",
    }
    first = tree_digest(root)
    assert tree_digest(root) == first
    assert first == oracle_tree_digest(root)

    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(root), str(copy)], check=True)
    assert tree_digest(copy) == first

    os.rename(base + b"/caf\xe9.py", base + "/café.py".encode())  # the UTF-8 spelling
    assert tree_digest(root) != first


# -- hard exclusions ---------------------------------------------------------------------


def test_walk_reports_nested_packages_and_skips_venvs_vcs_and_cookies(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "p",
        {
            "pyproject.toml": PYPROJECT,
            "mod.py": "",
            "plugins/extra/setup.cfg": "[metadata]\nname = extra\n",
            "plugins/extra/x.py": "",
            "env/pyvenv.cfg": "",
            "env/lib/site.py": "",
            ".hg/store": "",
            ".freshd-cookie-1234": "",
        },
    )
    walked = walk_package(root)
    assert rels(walked) == {"pyproject.toml", "mod.py"}
    assert walked.nested == ["plugins/extra"]


def test_walk_records_the_lstat_of_each_file(pkg: Path) -> None:
    for item in walk_package(pkg).files:
        st = os.lstat(pkg / item.rel)
        assert (item.st.st_ino, item.st.st_mode, item.st.st_size) == (
            st.st_ino,
            st.st_mode,
            st.st_size,
        )


def _age(root: Path) -> None:
    """Make every file's mtime old, so stored records pass the racy-timestamp rule."""
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(dirpath, name), (1_000_000_000, 1_000_000_000))


@pytest.mark.parametrize(
    ("change", "now_in", "now_out"),
    [
        # The rules that once admitted a known file now drop it.
        (lambda p: (p / ".gitignore").write_text("*.log\nsrc/a.py\n"), set(), {"src/a.py"}),
        (lambda p: (p / ".gitignore").unlink(), {"debug.log"}, set()),
        (
            lambda p: (p / "pyproject.toml").write_text(
                PYPROJECT + '[tool.freshd]\nexclude = ["src/"]\n'
            ),
            set(),
            {"src/a.py", "src/sub/b.py"},
        ),
        (lambda p: (p / "src" / ".gitignore").write_text("b.py\n"), set(), {"src/sub/b.py"}),
        (lambda p: None, set(), set()),
    ],
)
def test_known_members_follow_changed_rules(
    tmp_path: Path, change: Callable[[Path], object], now_in: set[str], now_out: set[str]
) -> None:
    pkg = make_tree(
        tmp_path / "rules",
        {
            "pyproject.toml": PYPROJECT,
            ".gitignore": "*.log\n",
            "debug.log": "x",
            "src/a.py": "a",
            "src/sub/b.py": "b",
        },
    )
    _age(pkg)
    first = scan(str(pkg))
    assert first.error is None
    known = {r.rel: r for r in first.records}
    members = {r.rel: r.digest for r in first.records}  # as a stamp's manifest has them
    change(pkg)
    warm = rels(walk(str(pkg), read_project(str(pkg)), known))
    cold = rels(walk_package(pkg))
    assert warm == cold  # the oracle: the same walk with nothing known
    assert now_in <= warm
    assert not now_out & warm
    # the same in a copy, where the rule files are judged by content, not by stat
    copy = tmp_path / "copy"
    shutil.copytree(pkg, copy, symlinks=True)
    by_content = scan(str(copy), members=members)
    assert by_content.error is None
    assert {r.rel for r in by_content.records} == cold


def test_cookie_names_are_left_out_as_files_and_as_directories(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "p",
        {
            "pyproject.toml": PYPROJECT,
            ".freshd-cookie-1": "",
            ".freshd-cookie-2/inside.py": "",
            "sub/.freshd-cookie-3/deeper/x": "",
            "sub/kept.py": "",
        },
    )
    walked = walk_package(root)
    assert rels(walked) == {"pyproject.toml", "sub/kept.py"}
    assert sorted(walked.hidden) == [".freshd-cookie-2", "sub/.freshd-cookie-3"]
