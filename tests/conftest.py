"""Shared helpers: build file trees, a simple package, and an independent digest oracle."""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from blake3 import blake3

from freshd_client.content.oneshot import digest_path


@dataclass(frozen=True)
class Link:
    """A symlink with this target string."""

    target: str


@dataclass(frozen=True)
class Exec:
    """A regular file with the executable bit set (mode 0755)."""

    content: str | bytes


Spec = str | bytes | Link | Exec | None  # None: an (empty) directory


def make_tree(root: Path, files: Mapping[str, Spec]) -> Path:
    """Create ``files`` (relative path -> content/Link/Exec/None) under ``root``; return root."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, spec in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if spec is None:
            path.mkdir(exist_ok=True)
        elif isinstance(spec, Link):
            path.symlink_to(spec.target)
        else:
            content = spec.content if isinstance(spec, Exec) else spec
            data = content.encode() if isinstance(content, str) else content
            path.write_bytes(data)
            path.chmod(0o755 if isinstance(spec, Exec) else 0o644)
    return root


PYPROJECT = '[project]\nname = "Demo_Pkg"\nversion = "0.1.0"\n'

DEMO_FILES: dict[str, Spec] = {
    "pyproject.toml": PYPROJECT,
    ".gitignore": "*.log\n",
    "README.md": "# demo\n",
    "src/demo/__init__.py": "from demo.core import answer\n",
    "src/demo/core.py": "def answer():\n    return 42\n",
    "src/demo/data.bin": bytes(range(256)) * 8,
    "bin/run": Exec("#!/bin/sh\necho run\n"),
    "core_link.py": Link("src/demo/core.py"),
}


def wait_out_racy_window(root: Path, deadline_s: float = 10.0) -> None:
    """Wait until the newest mtime and ctime below ``root`` is older than the racy window
    (``identity.RACY_WINDOW_NS``): only then may a stored hash of them be reused."""
    import time

    from freshd_client.spec.identity import RACY_WINDOW_NS

    newest = 0
    for dirpath, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            st = os.lstat(os.path.join(dirpath, name))
            newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
    deadline = time.monotonic() + deadline_s
    while time.time_ns() <= newest + RACY_WINDOW_NS:
        assert time.monotonic() < deadline, "the racy window did not pass"
        time.sleep(0.05)  # polling a clock: the condition is the time itself


def past_every_stamp(top: Path, probe: Path) -> None:
    """Wait until the file system's clock is later than every mtime and ctime in ``top``
    (``probe``: a file, outside ``top`` or not, written until its ctime says so)."""
    import time

    stamps = [os.lstat(top)]
    for base, dirs, files in os.walk(top):
        stamps += [os.lstat(os.path.join(base, name)) for name in dirs + files]
    latest = max(max(st.st_mtime_ns, st.st_ctime_ns) for st in stamps)
    deadline = time.monotonic() + 10
    while True:
        probe.write_bytes(b"")
        if os.lstat(probe).st_ctime_ns > latest:
            return
        assert time.monotonic() < deadline, "the file system's clock did not move"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("soak", "the long seeded reliability runs (make soak)")
    group.addoption(
        "--soak-seed",
        type=int,
        default=None,
        help="first seed of the soak runs (default: drawn from the clock and printed); "
        "a seed replays the same operations",
    )
    group.addoption(
        "--soak-minutes",
        type=float,
        default=3.0,
        help="how long each soak test keeps drawing new seeds (default: 3)",
    )


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    """A small src-layout package with an executable file, a symlink and a .gitignore."""
    return make_tree(tmp_path / "demo", DEMO_FILES)


def tree_digest(path: Path) -> str:
    """The one-shot tree digest of the package at ``path``."""
    value = digest_path(str(path), "tree").tree
    assert value is not None
    return value


def meta_digest(path: Path) -> str:
    """The one-shot meta digest of the package at ``path``."""
    value = digest_path(str(path), "meta").meta
    assert value is not None
    return value


def oracle_tree_digest(root: Path) -> str:
    """Recompute a tree digest from the spec, independently of freshd's walk and scan.

    Only valid for trees without ignore rules, nested packages or excluded
    directories: every regular file and symlink counts.
    """
    entries: list[tuple[bytes, bytes, bytes]] = []
    base = os.fsencode(root)
    for dirpath, dirs, names in os.walk(base):  # never follows symlinks by default
        for name in names + dirs:  # a symlink to a directory is listed in dirs
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            rel = os.path.relpath(full, base).replace(os.sep.encode(), b"/")
            if stat.S_ISLNK(st.st_mode):
                entries.append((rel, b"l", blake3(os.readlink(full)).digest()))
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as fh:
                    raw = blake3(fh.read()).digest()
                entries.append((rel, b"x" if st.st_mode & stat.S_IXUSR else b"f", raw))
    encoded = [b"freshd-digest\x002\x00tree\x00"]
    for rel, kind, raw in sorted(entries):
        encoded += [struct.pack("<I", len(rel)), rel, kind, raw]
    return "b3t2:" + blake3(b"".join(encoded)).hexdigest()


def _watcher_delivers(timeout: float = 10.0) -> str | None:
    """None when freshd's watcher reports a file written into a watched directory within
    ``timeout``; else what went wrong. A deaf watcher makes the daemon answer from a
    stale index, and every daemon test then waits out its deadline: a watchdog release
    once did this, and the suite ran for an hour instead of failing (issue 17)."""
    import queue
    import tempfile

    from freshd.watch.watcher import Watcher

    seen: queue.SimpleQueue[str] = queue.SimpleQueue()
    with tempfile.TemporaryDirectory(prefix="freshd-canary-") as root:
        root = os.path.realpath(root)
        watcher = Watcher(lambda event: seen.put(os.fsdecode(event.src_path)))
        watcher.start()
        try:
            watcher.watch(root)
            target = os.path.join(root, "probe.txt")
            with open(target, "w") as fh:
                fh.write("x")
            try:
                while seen.get(timeout=timeout) != target:
                    pass
            except queue.Empty:
                return f"no event for {target} within {timeout:.0f} s"
        finally:
            watcher.stop()
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop the whole run at once when the watcher is deaf (see ``_watcher_delivers``)."""
    problem = _watcher_delivers()
    if problem is not None:
        import watchdog.version

        pytest.exit(
            f"freshd's watcher delivers no events with watchdog "
            f"{watchdog.version.VERSION_STRING}: {problem}",
            returncode=1,
        )
