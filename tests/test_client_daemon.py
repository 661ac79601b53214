"""The client against the real daemon: ``freshd serve`` in a subprocess, real files.

Both transports must give the same answers; ``sync`` must see a write made just before
the call; a stopped or killed daemon must turn direct answers into ``None``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import PYPROJECT, make_tree, meta_digest, tree_digest
from freshd_client import Client, DaemonError
from freshd_client.spec.schema import LIVENESS_NS
from freshd_client.transport.http import HttpTransport

FRESHD = str(Path(sys.executable).parent / "freshd")
DEADLINE = 60.0
TRANSPORTS = ("direct", "http")


@dataclass
class Daemon:
    """A running ``freshd serve`` and where it keeps things."""

    proc: subprocess.Popen[bytes]
    root: Path
    index: Path
    socket: str

    def client(self, transport: str | None = None, **kwargs: Any) -> Client:
        return Client(
            index_dir=str(self.index), socket_path=self.socket, transport=transport, **kwargs
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def package(root: Path, name: str, files: int = 3) -> Path:
    spec: dict[str, Any] = {"pyproject.toml": PYPROJECT.replace("Demo_Pkg", name)}
    spec.update({f"src/{name}/m{i}.py": f"x = {i}\n" for i in range(files)})
    return make_tree(root / name, spec)


def wait_ready(socket: str, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    with HttpTransport(socket, timeout=5) as http:
        while True:
            assert proc.poll() is None, "freshd serve exited"
            try:
                health = http.health()
                if health["status"] == "ready":
                    return health
            except DaemonError:
                pass  # not listening yet
            assert time.monotonic() < deadline, "the daemon did not become ready"
            time.sleep(0.02)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    root = tmp_path / "mono"
    for name in ("core", "web", "cli"):
        package(root, name)
    sock_dir = tempfile.mkdtemp(prefix="fd")  # AF_UNIX paths are limited to 108 bytes
    socket = os.path.join(sock_dir, "freshd.sock")
    env = {**os.environ, "FRESHD_HOME": str(tmp_path / "home")}
    env.pop("FRESHD_SOCKET", None)
    proc = subprocess.Popen(
        [FRESHD, "serve", str(root), "--db", str(tmp_path / "index"), "--socket", socket],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    running = Daemon(proc, root, tmp_path / "index", socket)
    try:
        wait_ready(socket, proc)
        yield running
    finally:
        running.stop()
        if os.path.exists(socket):
            os.unlink(socket)
        os.rmdir(sock_dir)


def answers(c: Client, root: Path, digests: dict[str, str]) -> dict[str, Any]:
    """Everything a client can be asked about the test tree, as one comparable value."""
    core, web = str(root / "core"), str(root / "web")
    wrong = "b3t2:" + "0" * 64
    items = [(core, digests["core"]), (web, digests["core"]), (str(root / "none"), wrong)]
    return {
        "fresh": c.is_fresh(core, digests["core"]),
        "stale": c.is_fresh(core, wrong),
        "meta": c.is_fresh(core, digests["core-meta"]),
        "symlink": c.is_fresh(str(root / "link"), digests["core"]),
        "unindexed": c.is_fresh(str(root), digests["core"]),
        "sync": c.is_fresh(web, digests["web"], consistency="sync"),
        "many": c.check_many(items),
        "many-sync": c.check_many(items, consistency="sync"),
        "lookup": c.lookup(core),
        "by-name": c.lookup(name="CLI"),
        "missing": c.lookup(str(root / "none")),
        "packages": c.packages(),
    }


def test_both_transports_give_identical_answers(daemon: Daemon) -> None:
    (daemon.root / "link").symlink_to(daemon.root / "core")
    core = daemon.root / "core"
    digests = {
        "core": tree_digest(core),
        "core-meta": meta_digest(core),
        "web": tree_digest(daemon.root / "web"),
    }
    seen = {}
    for transport in TRANSPORTS:
        with daemon.client(transport) as c:
            assert c.transport == transport
            seen[transport] = answers(c, daemon.root, digests)
    assert seen["direct"] == seen["http"]
    direct = seen["direct"]
    assert (direct["fresh"], direct["stale"], direct["meta"], direct["symlink"]) == (
        True,
        False,
        True,
        True,
    )
    assert (direct["unindexed"], direct["sync"], direct["missing"]) == (None, True, None)
    assert direct["many"] == direct["many-sync"] == [True, False, None]
    assert direct["lookup"]["tree"] == digests["core"]
    assert direct["by-name"]["path"] == str(daemon.root / "cli")
    assert [p["name"] for p in direct["packages"]] == ["cli", "core", "web"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sync_reflects_a_write_made_just_before_the_call(daemon: Daemon, transport: str) -> None:
    path = daemon.root / "core"
    target = path / "src" / "core" / "m0.py"
    with daemon.client(transport) as c:
        for i in range(10):
            before = tree_digest(path)
            assert c.is_fresh(str(path), before, consistency="sync") is True
            target.write_text(f"x = {i} + 100\n")
            assert c.is_fresh(str(path), before, consistency="sync") is not True
            assert c.is_fresh(str(path), tree_digest(path), consistency="sync") is True


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wait_clean_settles_after_a_write(daemon: Daemon, transport: str) -> None:
    path = daemon.root / "web"
    before = tree_digest(path)
    with daemon.client(transport) as c:
        (path / "src" / "web" / "new.py").write_text("y = 1\n")
        info = c.wait_clean(str(path), timeout=DEADLINE)  # syncs first: sees the new file
        assert info is not None and info["state"] == "clean"
        assert info["tree"] == tree_digest(path) != before
        assert c.is_fresh(str(path), before) is False


def test_a_stopped_daemon_answers_unknown_at_once(daemon: Daemon) -> None:
    core = str(daemon.root / "core")
    digest = tree_digest(daemon.root / "core")
    with daemon.client("direct") as c:
        assert c.is_fresh(core, digest) is True
        daemon.stop(signal.SIGTERM)  # a clean stop writes status "stopped"
        assert c.is_fresh(core, digest) is None
        info = c.lookup(core)
        assert info is not None and info["state"] == "unknown"
    with daemon.client("http") as c:
        assert c.is_fresh(core, digest) is None


def test_a_killed_daemon_answers_unknown_within_the_liveness_window(daemon: Daemon) -> None:
    core = str(daemon.root / "core")
    digest = tree_digest(daemon.root / "core")
    with daemon.client("direct") as c:
        assert c.is_fresh(core, digest) is True
        daemon.stop(signal.SIGKILL)
        killed = time.monotonic()
        while c.is_fresh(core, digest) is not None:
            assert time.monotonic() - killed < LIVENESS_NS / 1e9 + 2.0
            time.sleep(0.05)


def test_cli_verbs(daemon: Daemon, tmp_path: Path) -> None:
    def freshd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FRESHD, *args, "--socket", daemon.socket],
            capture_output=True,
            text=True,
            timeout=DEADLINE,
            check=False,
        )

    status = freshd("status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith("ready  pid ")
    assert f"roots     {daemon.root} (watching)\n" in status.stdout
    assert "packages  3 (" in status.stdout
    health = json.loads(freshd("status", "--json").stdout)
    assert (health["status"], health["api_version"], health["packages"]) == ("ready", 1, 3)
    listing = freshd("ls").stdout.splitlines()
    assert listing[0].split() == ["STATE", "NAME", "PATH", "TREE"]
    assert [row.split()[:2] for row in listing[1:]] == [
        ["clean", "cli"],
        ["clean", "core"],
        ["clean", "web"],
    ]
    other = tmp_path / "other"
    package(other, "extra")
    added = freshd("add", str(other))
    assert (added.returncode, added.stdout) == (0, f"watching {other} (2 roots)\n"), added.stderr
    with daemon.client("http") as c:
        assert c.wait_clean(str(other / "extra"), timeout=DEADLINE) is not None
    removed = freshd("remove", str(other), "--json")
    assert json.loads(removed.stdout)["roots"] == [str(daemon.root)]
    again = freshd("remove", str(other))
    assert again.returncode == 1 and again.stderr.startswith("Error: ")
    assert len(again.stderr.splitlines()) == 1


READER = textwrap.dedent(
    """
    import os, sys
    from freshd_client import Client
    index, sock, stable, stable_digest, churned, original, marker, n = sys.argv[1:]
    with Client(index_dir=index, socket_path=sock, transport="direct") as c:
        for _ in range(int(n)):
            assert c.is_fresh(stable, stable_digest) is True, "stable package not fresh"
            changed = os.path.exists(marker)  # the write happened before the next call
            answer = c.is_fresh(churned, original, consistency="sync")
            assert not (changed and answer is True), "fresh after a completed write"
    """
)


def test_concurrent_clients_in_several_processes_while_the_daemon_writes(daemon: Daemon) -> None:
    stable, churned = daemon.root / "core", daemon.root / "web"
    original = tree_digest(churned)
    marker = daemon.root.parent / "changed"
    args = [str(daemon.index), daemon.socket, str(stable), tree_digest(stable)]
    args += [str(churned), original, str(marker), "200"]
    readers = [
        subprocess.Popen([sys.executable, "-c", READER, *args], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    target = churned / "src" / "web" / "m1.py"
    i = 0
    while any(r.poll() is None for r in readers):
        target.write_text(f"x = {i} + 1000\n")  # never the original content again
        if i == 0:
            marker.touch()
        i += 1
        time.sleep(0.005)  # pacing the writer only; the readers assert, not this loop
    for reader in readers:
        _out, err = reader.communicate(timeout=DEADLINE)
        assert reader.returncode == 0, err


def documented_reader(index: Path, path: str, digest: str) -> bool | None:
    """docs/client-protocol.md's reader, written from the document with lmdb and struct only."""
    import lmdb

    env = lmdb.open(str(index), readonly=True, max_dbs=8)
    try:
        meta, packages = env.open_db(b"meta", create=False), env.open_db(b"packages", create=False)
        with env.begin() as txn:
            assert txn.get(b"schema_version", db=meta) == b"2"
            d = txn.get(b"daemon", db=meta)
            heartbeat = int.from_bytes(d[8:16], "little", signed=True)
            if d[0] != 1 or d[1] != 2 or not 0 <= time.time_ns() - heartbeat < 5_000_000_000:
                return None
            v = txn.get(os.fsencode(path), db=packages)
            if v is None or v[1] != 2:
                return None
            offset, flag = {"b3t2:": (24, 1), "b3m2:": (56, 2)}[digest[:5]]
            if not v[2] & flag:
                return None
            return bytes(v[offset : offset + 32]) == bytes.fromhex(digest[5:])
    finally:
        env.close()


def test_the_documented_direct_reader_agrees_with_the_client(daemon: Daemon) -> None:
    core = daemon.root / "core"
    questions = [
        (str(core), tree_digest(core)),
        (str(core), meta_digest(core)),
        (str(core), "b3t2:" + "0" * 64),
        (str(daemon.root / "none"), tree_digest(core)),
    ]
    with daemon.client("direct") as c:
        expected = c.check_many(questions)
    assert expected == [True, True, False, None]
    assert [documented_reader(daemon.index, p, d) for p, d in questions] == expected
