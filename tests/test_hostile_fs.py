"""Hostile and odd file systems under a real daemon (issue 5, item 3).

Special files that must never be opened, symlink loops and links out of the root,
unreadable files and directories (a daemon without root's privileges), names that are
not UTF-8, paths near PATH_MAX, a 2 GB sparse file, 100,000 files in one directory, a
package directory swapped for a symlink, a root deleted or moved away while watched,
the inotify watch limit exhausted and the kernel's event queue overflowing.

Every scenario ends in ``assert_exact`` (a ``sync`` query and the package list against
a from-scratch recomputation) or, where no digest can exist, in an explicit check that
nothing is answered fresh.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import Link

pytest.register_assert_rewrite("daemon_harness")
from daemon_harness import (  # noqa: E402
    Daemon,
    Factory,
    assert_exact,
    atomic_write,
    make_package,
    oracle,
    start_prefixed,
    wait_until,
    write,
)

pytest_plugins = ["daemon_harness"]

NO_DIGEST = "b3t2:" + "0" * 64
ROOT_USER = os.geteuid() == 0


def never_fresh(daemon: Daemon, path: Path | str, digests: list[str]) -> list[dict[str, Any]]:
    """A sync and a fast query for ``digests`` at ``path``: none may answer fresh."""
    results = []
    for sync in (True, False):
        answer = daemon.fresh([(path, d) for d in digests], sync=sync, timeout_ms=10_000)
        for result in answer["results"]:
            assert result["fresh"] is not True, f"answered fresh: {result} (sync={sync})"
        results.extend(answer["results"])
    return results


def metric(daemon: Daemon, name: str) -> float:
    """The value of one un-labelled sample of ``/metrics``."""
    answer = daemon.request("GET", "/metrics")
    for line in answer.raw.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no sample {name} in /metrics")


# -- one daemon for the trees that do not need their own -----------------------------------


def _special(tree: Path) -> list[Path]:
    pkg = make_package(tree, "special")
    src = pkg / "src/special"
    os.mkfifo(src / "pipe")
    os.mknod(src / "sock", 0o600 | stat.S_IFSOCK)
    os.mknod(src / "zero.py", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # a read never ends
    os.mknod(src / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(src / "blk", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    os.mkfifo(pkg / "setup.cfg")  # a project file that is a FIFO
    # A cache key that is a FIFO: the meta digest must not open it either.
    write(
        pkg / "pyproject.toml",
        '[project]\nname = "special"\nversion = "1"\n\n'
        '[tool.uv]\ncache-keys = [{ file = "pyproject.toml" }, { file = "key.fifo" }]\n',
    )
    os.mkfifo(pkg / "key.fifo")
    return [pkg]


def _loops(tree: Path) -> list[Path]:
    pkg = make_package(tree, "loops")
    os.symlink("b", pkg / "a")
    os.symlink("a", pkg / "b")
    os.symlink("self", pkg / "self")
    os.symlink(".", pkg / "here")
    os.symlink("..", pkg / "up")
    os.symlink("../../loops", pkg / "src/loops/back")
    os.symlink("/proc/self/cwd", pkg / "proc_cwd")
    return [pkg]


def _outside(tree: Path) -> list[Path]:
    pkg = make_package(tree, "outside")
    away = tree.parent.parent / "away"  # outside every root
    write(away / "secret.txt", "secret 1\n")
    make_package(away, "elsewhere")
    os.symlink(away / "secret.txt", pkg / "secret.txt")
    os.symlink(away, pkg / "away_dir")
    os.symlink("/etc/shadow", pkg / "shadow")
    os.symlink("../" * 40 + "etc/passwd", pkg / "climb")
    return [pkg]


def _name(raw: bytes) -> str:
    return os.fsdecode(raw)


def _nonutf8(tree: Path) -> list[Path]:
    pkg = make_package(tree, "nonutf8")
    write(pkg / _name(b"caf\xe9.py"), "latin-1 name\n")
    write(pkg / _name(b"d\xff/inner.py"), "in a directory named with a 0xff byte\n")
    write(pkg / "src" / _name(b"\xc3\x28.py"), "invalid two-byte sequence\n")
    project = '[project]\nname = "odd"\nversion = "1"\n'
    odd = make_package(tree, _name(b"pkg\xfe"), {"pyproject.toml": project, "src/odd/m.py": ""})
    write(odd / _name(b"\x80\x81.txt"), "continuation bytes only\n")
    return [pkg, odd]


def _long(tree: Path) -> list[Path]:
    pkg = make_package(tree, "long")
    write(pkg / ("n" * 255), "a name of NAME_MAX bytes\n")
    deep = pkg
    while len(os.fsencode(deep)) < 3700:
        deep = deep / ("d" * 200)
    write(deep / ("f" * 100), "near PATH_MAX\n")
    return [pkg]


def _swap(tree: Path) -> list[Path]:
    return [make_package(tree, "core"), make_package(tree, "web")]


TREES = {
    "special": _special,
    "loops": _loops,
    "outside": _outside,
    "nonutf8": _nonutf8,
    "long": _long,
    "swap": _swap,
}


@dataclass
class Shared:
    daemon: Daemon
    root: Path
    packages: dict[str, list[Path]]

    def tree(self, name: str) -> Path:
        return self.root / name


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    base = tmp_path_factory.mktemp("hostile")
    root = base / "root"
    packages = {name: build(root / name) for name, build in TREES.items()}
    factory = Factory(base / "freshd")
    try:
        yield Shared(factory(root), root, packages)
    finally:
        factory.close()


def test_special_files_are_never_opened(shared: Shared) -> None:
    """FIFOs, sockets and devices (one of them /dev/zero) at the crawl and while watched:
    never opened (no hang), never part of a file set."""
    tree = shared.tree("special")
    (pkg,) = shared.packages["special"]
    assert_exact(shared.daemon, [pkg], roots=[tree])
    before = oracle(pkg).tree
    src = pkg / "src/special"
    os.mkfifo(src / "pipe2")
    os.mknod(src / "zero2.py", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    os.mknod(src / "sock2", 0o600 | stat.S_IFSOCK)
    assert_exact(shared.daemon, [pkg], roots=[tree])
    assert oracle(pkg).tree == before  # none of them is content
    # A source file replaced by a FIFO and by /dev/zero (renamed over: one event each).
    os.mkfifo(src / ".m0.tmp")
    os.replace(src / ".m0.tmp", src / "m0.py")
    os.mknod(src / ".m1.tmp", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
    os.replace(src / ".m1.tmp", src / "m1.py")
    assert_exact(shared.daemon, [pkg], roots=[tree])
    assert oracle(pkg).files == 2  # pyproject.toml and m2.py
    never_fresh(shared.daemon, pkg, [before])
    # And back: regular files over the FIFO and the device.
    atomic_write(src / "m0.py", "x = 'regular again'\n")
    atomic_write(src / "m1.py", "y = 'regular again'\n")
    assert_exact(shared.daemon, [pkg], roots=[tree])


def test_a_file_swapped_for_a_device_while_hashed_is_not_read(tmp_path: Path) -> None:
    """The race between the walk's lstat and the open: a regular file replaced by
    /dev/zero must not be read (it never ends). In a subprocess, so a hang is a failure."""
    code = f"""
import os, stat
from freshd_client.content.scan import hash_path
path = {str(tmp_path / "f.py")!r}
with open(path, "w") as f:
    f.write("x = 1\\n")
st = os.lstat(path)  # what the walk saw
os.unlink(path)
os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5))
print(hash_path(path, st))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "None", proc.stdout


def test_symlink_loops_are_recorded_not_followed(shared: Shared) -> None:
    tree = shared.tree("loops")
    (pkg,) = shared.packages["loops"]
    assert_exact(shared.daemon, [pkg], roots=[tree])
    os.symlink("loop2", pkg / "src/loops/loop1")
    os.symlink("loop1", pkg / "src/loops/loop2")
    os.symlink("../..", pkg / "src/loops/upup")
    os.mkdir(pkg / "cycle")
    os.symlink("../cycle", pkg / "cycle/again")
    assert_exact(shared.daemon, [pkg], roots=[tree])
    # A query through a looping path finds nothing and does not hang.
    assert shared.daemon.fresh([(pkg / "a", NO_DIGEST)], sync=True)["results"][0]["fresh"] is None
    lookup = shared.daemon.request("GET", f"/v1/packages/lookup?path={pkg / 'self'}")
    assert lookup.status == 404, lookup


def test_links_out_of_the_root_are_never_followed(shared: Shared) -> None:
    """A link's digest is its target string: what it points to outside the root is
    never read, and changing it changes nothing."""
    tree = shared.tree("outside")
    (pkg,) = shared.packages["outside"]
    away = tree.parent.parent / "away"
    assert_exact(shared.daemon, [pkg], roots=[tree])
    before = oracle(pkg)
    write(away / "secret.txt", "secret 2, longer than before\n")
    write(away / "new_module.py", "appeared outside\n")
    write(away / "elsewhere/src/elsewhere/m0.py", "edited outside\n")
    assert_exact(shared.daemon, [pkg], roots=[tree])
    assert oracle(pkg) == before
    assert not [p for p in shared.daemon.packages() if p.startswith(str(away))]
    for target in (pkg / "away_dir/elsewhere", away / "elsewhere"):
        answer = shared.daemon.request("GET", f"/v1/packages/lookup?path={target}")
        assert answer.status == 404, answer
    # Retargeting a link is a change of the package.
    os.symlink(away / "new_module.py", pkg / ".secret.tmp")
    os.replace(pkg / ".secret.tmp", pkg / "secret.txt")
    assert_exact(shared.daemon, [pkg], roots=[tree])
    never_fresh(shared.daemon, pkg, [before.tree])


def test_names_that_are_not_utf8(shared: Shared) -> None:
    tree = shared.tree("nonutf8")
    pkg, odd = shared.packages["nonutf8"]
    assert_exact(shared.daemon, [pkg, odd], roots=[tree])
    before = oracle(pkg).tree
    write(pkg / _name(b"new\xe8.py"), "created while watched\n")
    os.rename(pkg / _name(b"caf\xe9.py"), pkg / _name(b"caf\xe9\xe9.py"))
    write(pkg / _name(b"d\xff/inner.py"), "edited\n")
    write(odd / _name(b"\x80\x81.txt"), "edited too\n")
    assert_exact(shared.daemon, [pkg, odd], roots=[tree])
    never_fresh(shared.daemon, pkg, [before])
    # Paths travel as JSON strings with surrogate escapes and come back as the same bytes.
    listed = {os.fsencode(p) for p in shared.daemon.packages()}
    assert {os.fsencode(pkg), os.fsencode(odd)} <= listed
    shutil.rmtree(pkg / _name(b"d\xff"))
    assert_exact(shared.daemon, [pkg, odd], roots=[tree])


def test_paths_near_and_beyond_path_max(shared: Shared) -> None:
    """Names of NAME_MAX bytes and paths just under PATH_MAX are indexed exactly; a path
    beyond PATH_MAX cannot be read by absolute path: the package is an error, never fresh,
    and recovers when the path goes."""
    tree = shared.tree("long")
    (pkg,) = shared.packages["long"]
    assert_exact(shared.daemon, [pkg], roots=[tree])
    deep = pkg
    while len(os.fsencode(deep)) < 3700:
        deep = deep / ("d" * 200)
    write(deep / ("g" * 200), "edited near PATH_MAX\n")
    assert_exact(shared.daemon, [pkg], roots=[tree])
    before = oracle(pkg).tree

    # Beyond PATH_MAX: built relative to a directory descriptor.
    fd = os.open(deep, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(3):
            os.mkdir("e" * 200, dir_fd=fd)
            inner = os.open("e" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open("too_far.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)

    def errored() -> dict[str, Any] | None:
        info = shared.daemon.packages()[str(pkg)]
        return info if info["state"] == "error" else None

    shared.daemon.fresh([(pkg, before)], sync=True)
    info = wait_until(errored, "the package beyond PATH_MAX to be an error")
    assert "too long" in info["error"].lower(), info
    never_fresh(shared.daemon, pkg, [before])
    shutil.rmtree(deep / ("e" * 200))  # rmtree works relative to descriptors
    assert_exact(shared.daemon, [pkg], roots=[tree])
    assert oracle(pkg).tree == before


def test_a_package_directory_replaced_by_a_symlink(shared: Shared) -> None:
    tree = shared.tree("swap")
    core, web = shared.packages["swap"]
    assert_exact(shared.daemon, [core, web], roots=[tree])
    old = oracle(web)
    away = tree.parent.parent / "swap_away"
    away.mkdir()
    os.rename(web, away / "web")
    os.symlink(away / "web", web)  # the same content, now outside the root
    assert_exact(shared.daemon, [core], roots=[tree])
    never_fresh(shared.daemon, web, [old.tree, old.meta])
    # A link to a package inside the root answers for that package, by its own path.
    os.unlink(web)
    os.symlink("core", web)
    assert_exact(shared.daemon, [core], roots=[tree])
    answer = shared.daemon.fresh([(web, oracle(core).tree), (web, old.tree)], sync=True)
    assert [r["fresh"] for r in answer["results"]] == [True, False], answer
    # And back to a real directory.
    os.unlink(web)
    os.rename(away / "web", web)
    assert_exact(shared.daemon, [core, web], roots=[tree])


# -- daemons of their own -------------------------------------------------------------------


NOBODY = 65534


@pytest.fixture
def nobody_base() -> Iterator[Path]:
    """A directory the unprivileged user owns (pytest's tmp_path is root's, mode 0700)."""
    base = Path(tempfile.mkdtemp(prefix="freshd-nobody-"))
    os.chmod(base, 0o755)  # noqa: S103 (nobody must traverse it)
    os.chown(base, NOBODY, NOBODY)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _chown_tree(path: Path) -> None:
    for dirpath, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(dirpath, name), NOBODY, NOBODY)
    os.lchown(path, NOBODY, NOBODY)


@pytest.mark.skipif(
    ROOT_USER and shutil.which("setpriv") is None,
    reason="root reads files whatever their mode and setpriv is missing: nothing to test",
)
def test_unreadable_files_and_directories(freshd_factory: Factory, nobody_base: Path) -> None:
    """Permission bits stop only an unprivileged daemon: as root, it runs as nobody.

    An unreadable file or directory makes its package an error (never fresh for the
    digest of the content it cannot read); made readable again, the package comes back
    and stays followed: an edit inside the directory that was unreadable is seen.
    """
    root = nobody_base / "root"
    pkg = make_package(root, "locked")
    other = make_package(root, "open")
    write(pkg / "private/inside.py", "inside = 1\n")
    write(pkg / "private/deeper/more.py", "more = 1\n")
    _chown_tree(root)
    os.chmod(pkg / "private", 0o000)
    os.chmod(pkg / "src/locked/m0.py", 0o000)
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    # One worker: no hashing processes, since nobody cannot execute this interpreter (it
    # lives under /root); the scan is the same code either way. The test asks as root,
    # whom a daemon of nobody's serves only when named (--allow-uid).
    daemon = start_prefixed(
        freshd_factory,
        prefix if ROOT_USER else [],
        nobody_base,
        [root],
        ["--workers", "1", "--allow-uid", "0"],
    )
    want = oracle(pkg)  # root reads everything: the digests of the real content
    info = daemon.packages()[str(pkg)]
    assert info["state"] == "error" and "Permission denied" in info["error"], info
    never_fresh(daemon, pkg, [want.tree, want.meta])
    got = daemon.packages()[str(other)]
    assert (got["state"], got["tree"]) == ("clean", oracle(other).tree), got

    os.chmod(pkg / "src/locked/m0.py", 0o644)
    os.chmod(pkg / "private", 0o755)  # noqa: S103
    assert_exact(daemon, [pkg, other])
    # The directory that could not be watched while unreadable is watched now.
    write(pkg / "private/inside.py", "inside = 'edited after chmod'\n")
    write(pkg / "private/deeper/more.py", "more = 'edited after chmod'\n")
    daemon.wait_package(pkg, lambda i: i["tree"] == oracle(pkg).tree, "the edit, without sync")
    assert_exact(daemon, [pkg, other])

    # Made unreadable while watched.
    old = oracle(pkg)
    os.chmod(pkg / "src/locked/m1.py", 0o000)
    write(pkg / "src/locked/m1.py", "edited while unreadable\n")
    daemon.fresh([(pkg, old.tree)], sync=True)
    info = daemon.wait_package(pkg, lambda i: i["state"] == "error", "an error")
    never_fresh(daemon, pkg, [old.tree, oracle(pkg).tree])
    os.chmod(pkg / "src/locked/m1.py", 0o644)
    assert_exact(daemon, [pkg, other])


@pytest.mark.slow
def test_a_2gb_sparse_file(freshd_factory: Factory, tmp_path: Path) -> None:
    root = tmp_path / "root"
    pkg = make_package(root, "sparse")
    blob = pkg / "src/sparse/blob.bin"
    with open(blob, "wb") as f:
        f.truncate(2 << 30)
        f.seek(1 << 30)
        f.write(b"a byte in the middle")
    assert os.stat(blob).st_blocks * 512 < (1 << 24), "the file system does not keep holes"
    daemon = freshd_factory(root)
    assert_exact(daemon, [pkg])
    before = oracle(pkg).tree
    fd = os.open(blob, os.O_WRONLY)
    try:
        os.pwrite(fd, b"changed near the end", (2 << 30) - 100)
    finally:
        os.close(fd)
    assert_exact(daemon, [pkg])
    never_fresh(daemon, pkg, [before])


@pytest.mark.soak  # half a minute on 2 cores: too long for make test's budget
def test_100k_files_in_one_directory(freshd_factory: Factory, tmp_path: Path) -> None:
    """60,000 files crawled, 40,000 more created while watched (bursts of events larger
    than the default inotify queue), then edits and deletions."""
    root = tmp_path / "root"
    pkg = make_package(root, "wide", {})
    flat = pkg / "src/wide"
    flat.mkdir(parents=True)
    for i in range(60_000):
        (flat / f"f{i}.py").write_bytes(b"v = %d\n" % i)
    daemon = freshd_factory(root)
    assert daemon.health()["files"] == 60_001
    for i in range(60_000, 100_000):
        (flat / f"f{i}.py").write_bytes(b"v = %d\n" % i)
    assert_exact(daemon, [pkg])
    assert daemon.health()["files"] == 100_001
    before = oracle(pkg).tree
    write(flat / "f77777.py", "edited\n")
    for i in range(0, 100_000, 97):
        (flat / f"f{i}.py").unlink()
    assert_exact(daemon, [pkg])
    never_fresh(daemon, pkg, [before])


def test_a_root_deleted_while_watched(freshd_factory: Factory, tmp_path: Path) -> None:
    root = tmp_path / "root"
    pkg = make_package(root, "gone")
    daemon = freshd_factory(root, args=["--workers", "2", "--rescan-seconds", "0.2"])
    assert_exact(daemon, [pkg])
    old = oracle(pkg)
    shutil.rmtree(root)
    wait_until(lambda: daemon.health()["watch"][str(root)] == "missing", "the root missing")
    # Health shows the mode as soon as it is set, the index a moment later.
    wait_until(lambda: str(pkg) not in daemon.packages(), "its package to leave the index")
    never_fresh(daemon, pkg, [old.tree, old.meta])
    # It comes back with other content: followed again.
    make_package(root, "gone", {"src/gone/other.py": "other = 1\n"})
    wait_until(lambda: daemon.health()["watch"][str(root)] == "watching", "the root watched")
    assert_exact(daemon, [pkg])
    write(pkg / "src/gone/other.py", "other = 2\n")
    assert_exact(daemon, [pkg])


def test_a_root_moved_away_and_replaced(freshd_factory: Factory, tmp_path: Path) -> None:
    """``mv root root.old && mkdir root``: the watches follow the old directory, so the
    daemon must notice that its root is another directory now."""
    root = tmp_path / "root"
    pkg = make_package(root, "moved")
    daemon = freshd_factory(root, args=["--workers", "2", "--rescan-seconds", "0.2"])
    assert_exact(daemon, [pkg])
    old = oracle(pkg)
    os.rename(root, tmp_path / "root.old")
    make_package(root, "moved", {"src/moved/m0.py": "x = 'a different package'\n"})
    assert oracle(pkg) != old
    # Until the daemon has noticed, its answer may be unknown; it is never fresh.
    never_fresh(daemon, pkg, [old.tree])
    write(tmp_path / "root.old/moved/src/moved/m1.py", "edited in the old directory\n")
    never_fresh(daemon, pkg, [old.tree])
    wait_until(lambda: daemon.health()["watch"][str(root)] == "watching", "the root watched")
    assert_exact(daemon, [pkg])
    write(pkg / "src/moved/m0.py", "x = 'edited in the new root'\n")
    assert_exact(daemon, [pkg])


# -- kernel limits ---------------------------------------------------------------------------


def _userns_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            "echo 10 > /proc/sys/user/max_inotify_watches",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0


def test_the_inotify_watch_limit_exhausted(freshd_factory: Factory, tmp_path: Path) -> None:
    """More directories than watches: the root is polled and never answered fresh,
    and it is followed again once the limit allows.

    The limit is lowered for the daemon alone: it runs in a user namespace of its own,
    whose ``/proc/sys/user/max_inotify_watches`` caps its watches (the kernel charges
    them to every namespace up the chain). Lowering the global
    ``fs.inotify.max_user_watches`` instead would starve every other root-owned watcher
    on the machine (other test runs) for the test's duration.
    """
    if not _userns_available():
        pytest.skip("no user namespaces here (unshare --user): the watch limit cannot be lowered")
    root = tmp_path / "root"
    pkg = make_package(root, "many_dirs")
    for i in range(60):
        write(pkg / f"src/many_dirs/d{i}/m.py", f"m = {i}\n")
    limit_file = tmp_path / "limit"
    limit_file.write_text("30\n")
    # The namespace's limit is read from a file, so the test can raise it later.
    script = (
        'cat "$0" > /proc/sys/user/max_inotify_watches && '
        '(while sleep 0.1; do cat "$0" > /proc/sys/user/max_inotify_watches; done) & exec "$@"'
    )
    prefix = ["unshare", "--user", "--map-root-user", "sh", "-c", script, str(limit_file)]
    base = tmp_path / "d"
    base.mkdir()
    daemon = start_prefixed(
        freshd_factory, prefix, base, [root], ["--workers", "2", "--rescan-seconds", "0.2"]
    )
    health = daemon.health()
    assert health["watch"][str(root)] == "polling", health
    want = oracle(pkg)
    never_fresh(daemon, pkg, [want.tree, want.meta])
    assert "inotify watch limit" in daemon.log()
    write(pkg / "src/many_dirs/d7/m.py", "edited while polled\n")
    never_fresh(daemon, pkg, [oracle(pkg).tree])

    limit_file.write_text("10000\n")
    wait_until(lambda: daemon.health()["watch"][str(root)] == "watching", "watching again")
    assert_exact(daemon, [pkg])
    write(pkg / "src/many_dirs/d59/m.py", "edited once watched again\n")
    assert_exact(daemon, [pkg])


QUEUED_EVENTS = "/proc/sys/fs/inotify/max_queued_events"


@contextlib.contextmanager
def lowered_queue(value: int) -> Iterator[None]:
    """``fs.inotify.max_queued_events`` lowered, restored on the way out whatever happens.
    It is read when an inotify instance is created: lower it only around a daemon start."""
    with open(QUEUED_EVENTS) as f:
        old = f.read().strip()
    with open(QUEUED_EVENTS, "w") as f:
        f.write(str(value))
    try:
        yield
    finally:
        with open(QUEUED_EVENTS, "w") as f:
            f.write(old)


def test_the_event_queue_overflows(freshd_factory: Factory, tmp_path: Path) -> None:
    if not os.access(QUEUED_EVENTS, os.W_OK):
        pytest.skip(f"{QUEUED_EVENTS} is not writable here: the queue cannot be made small")
    root = tmp_path / "root"
    packages = [make_package(root, f"p{i}") for i in range(4)]
    with lowered_queue(64):
        daemon = freshd_factory(root, wait=False)
        # The instance exists once the daemon answers (the engine creates it first).
        wait_until(daemon.answers, "the daemon to answer")
    daemon.wait_status("ready")
    assert_exact(daemon, packages)
    before = {p: oracle(p).tree for p in packages}
    for round_ in range(2):
        # The daemon is stopped while the burst is written, so its 64-event queue
        # overflows whatever the machine's speed (a running reader may keep up).
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            for p in packages:
                for i in range(200):
                    write(p / f"src/{p.name}/burst{i}.py", f"burst = {round_}\n")
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        for p in packages:
            never_fresh(daemon, p, [before[p]])
        assert_exact(daemon, packages)
    assert metric(daemon, "freshd_overflows_total") > 0, "the queue never overflowed"
    assert daemon.health()["status"] == "ready"


def test_the_daemon_runs_in_a_user_namespace_too(freshd_factory: Factory, tmp_path: Path) -> None:
    """The control for the watch-limit test: the same wrapper, a generous limit, watching."""
    if not _userns_available():
        pytest.skip("no user namespaces here (unshare --user)")
    root = tmp_path / "root"
    pkg = make_package(root, "control", {"src/control/a.py": "a = 1\n", "x/y/z.py": Link("a")})
    prefix = ["unshare", "--user", "--map-root-user"]
    base = tmp_path / "d"
    base.mkdir()
    daemon = start_prefixed(freshd_factory, prefix, base, [root], ["--workers", "2"])
    assert daemon.health()["watch"][str(root)] == "watching"
    write(pkg / "src/control/a.py", "a = 2\n")
    assert_exact(daemon, [pkg])
