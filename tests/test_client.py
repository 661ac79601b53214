"""freshd_client.Client on the direct transport, against a scripted index writer.

The writer (tests/fake_daemon.py) runs in its own process, as the daemon does; it
keeps the heartbeat fresh and acknowledges cookies after applying "pending" changes.
Tests against the real daemon are in tests/test_client_daemon.py.
"""

from __future__ import annotations

import os
import shutil
import struct
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

from client_fakes import FakeDaemon, FakeServer
from freshd_client import (
    AmbiguousNameError,
    ApiMismatchError,
    Client,
    FreshdError,
    IndexMissingError,
    SchemaMismatchError,
)
from freshd_client.spec.schema import COOKIE_PREFIX, LIVENESS_NS

A = "b3t2:" + "aa" * 32
B = "b3t2:" + "bb" * 32
M = "b3m2:" + "cc" * 32
DEADLINE = 30.0


@dataclass
class World:
    """An index kept by a fake daemon, and one root directory it "watches"."""

    fake: FakeDaemon
    index: Path
    root: Path

    def package(self, name: str, **fields: Any) -> str:
        path = self.root / name
        path.mkdir(exist_ok=True)
        fields.setdefault("state", "clean")
        self.fake.package(str(path), str(self.root), name=name, **fields)
        return str(path)

    def client(self, **kwargs: Any) -> Client:
        return Client(index_dir=str(self.index), transport="direct", **kwargs)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    root = tmp_path / "root"
    root.mkdir()
    world = World(FakeDaemon(tmp_path / "index"), tmp_path / "index", root)
    try:
        world.fake.send("root", path=str(root))
        yield world
    finally:
        world.fake.close()  # the current one: a test may have replaced it


def wait_for(condition: Any, timeout: float = DEADLINE) -> float:
    """Poll ``condition`` until it is true; return the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "condition not met before the deadline"
        time.sleep(0.01)
    return time.monotonic() - start


# -- answers ----------------------------------------------------------------------------


def test_clean_package_is_fresh_for_its_own_digests_only(world: World) -> None:
    path = world.package("core", tree=A, meta=M)
    with world.client() as c:
        assert c.transport == "direct"
        assert c.is_fresh(path, A) is True
        assert c.is_fresh(path, A, scope="tree") is True
        assert c.is_fresh(path, B) is False
        assert c.is_fresh(path, M) is True
        assert c.is_fresh(path, M, scope="meta") is True
        assert c.is_fresh(path, "b3m2:" + "aa" * 32) is False


@pytest.mark.parametrize("state", ["dirty", "unknown", "error"])
def test_only_clean_is_ever_fresh(world: World, state: str) -> None:
    path = world.package(
        "core", state=state, tree=A, meta=M, error="x" if state == "error" else None
    )
    with world.client() as c:
        assert c.is_fresh(path, A) is None
        assert c.is_fresh(path, M) is None
        assert c.check_many([(path, A), (path, M)]) == [None, None]
        assert c.is_fresh(path, A, consistency="sync") is None


def test_unset_digest_and_unindexed_path_are_unknown(world: World) -> None:
    path = world.package("core", tree=A)
    with world.client() as c:
        assert c.is_fresh(path, M) is None  # clean, but no meta digest recorded
        assert c.is_fresh(str(world.root / "elsewhere"), A) is None
        assert c.is_fresh("/", A) is None


def test_bad_digest_or_scope_is_a_value_error(world: World) -> None:
    path = world.package("core", tree=A)
    with world.client() as c:
        with pytest.raises(ValueError, match="not a freshd digest"):
            c.is_fresh(path, "sha256:abc")
        with pytest.raises(ValueError, match="is a tree digest, not meta"):
            c.is_fresh(path, A, scope="meta")
        with pytest.raises(ValueError, match="not a freshd digest"):
            c.check_many([(path, A), (path, "b3t2:xyz")])


def test_paths_are_canonicalized(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    path = world.package("core", tree=A)
    link = world.root.parent / "link"
    link.symlink_to(path)
    monkeypatch.chdir(world.root)
    with world.client() as c:
        for form in (
            str(link),
            "core",
            "./core/",
            path + "/",
            str(world.root / "x" / ".." / "core"),
        ):
            assert c.is_fresh(form, A) is True, form
            assert c.check_many([(form, A)]) == [True], form
            info = c.lookup(form)
            assert info is not None and info["path"] == path, form


def test_check_many_answers_each_item_like_is_fresh(world: World) -> None:
    paths = [world.package(f"p{i}", tree=A if i % 2 else B) for i in range(20)]
    dirty = world.package("dirty", state="dirty", tree=A)
    items = [(p, A) for p in paths] + [(dirty, A), (str(world.root / "none"), A)]
    with world.client() as c:
        answers = c.check_many(items)
        assert answers == [c.is_fresh(p, d) for p, d in items]
        assert answers[:4] == [False, True, False, True]
        assert answers[-2:] == [None, None]
        assert c.check_many([]) == []


# -- liveness ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "daemon",
    [
        {"status": "stopped"},
        {"status": "starting"},
        {"status": "indexing"},
        {"age_ns": LIVENESS_NS + 1_000_000_000, "beat": False},  # a stale heartbeat
        {"age_ns": -60_000_000_000, "beat": False},  # a heartbeat from the future
    ],
)
def test_not_live_answers_unknown_never_fresh(world: World, daemon: dict[str, Any]) -> None:
    path = world.package("core", tree=A)
    with world.client() as c:
        assert c.is_fresh(path, A) is True
        world.fake.send("daemon", **daemon)
        assert c.is_fresh(path, A) is None
        assert c.is_fresh(path, B) is None
        assert c.check_many([(path, A)]) == [None]
        assert c.is_fresh(path, A, consistency="sync") is None
        info = c.lookup(path)
        assert info is not None and info["state"] == "unknown"
        assert [p["state"] for p in c.packages()] == ["unknown"]


def test_missing_daemon_record_is_unknown(world: World) -> None:
    path = world.package("core", tree=A)
    world.fake.send("delete_daemon")
    with world.client() as c:
        assert c.is_fresh(path, A) is None


def test_killed_daemon_turns_answers_unknown_within_the_liveness_window(world: World) -> None:
    path = world.package("core", tree=A)
    with world.client() as c:
        assert c.is_fresh(path, A) is True
        world.fake.proc.kill()
        world.fake.proc.wait()
        took = wait_for(lambda: c.is_fresh(path, A) is None, timeout=LIVENESS_NS / 1e9 + 5)
        assert took <= LIVENESS_NS / 1e9 + 1.0


def test_daemon_record_of_another_api_version_is_a_clear_error(world: World) -> None:
    path = world.package("core", tree=A)
    world.fake.send("daemon", api=2)
    with world.client() as c, pytest.raises(ApiMismatchError, match="API version 2"):
        c.is_fresh(path, A)


# -- opening ----------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["direct", None])
def test_schema_mismatch_is_a_clear_error(world: World, transport: Any) -> None:
    world.fake.send("schema", value="1")  # an index of format-1 digests
    with pytest.raises(SchemaMismatchError, match="schema version 1; this freshd reads version 2"):
        Client(index_dir=str(world.index), transport=transport).open()


def test_missing_index_falls_back_to_http_unless_direct_is_forced(tmp_path: Path) -> None:
    with Client(index_dir=str(tmp_path / "none"), socket_path=str(tmp_path / "s")) as c:
        assert c.transport == "http"
        assert c.is_fresh(str(tmp_path), A) is None  # no daemon answers: unknown
    with pytest.raises(IndexMissingError):
        Client(index_dir=str(tmp_path / "none"), transport="direct").open()


def test_transport_env_var(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRESHD_CLIENT_TRANSPORT", "http")
    with Client(index_dir=str(world.index), socket_path="/nonexistent.sock") as c:
        assert c.transport == "http"
    monkeypatch.setenv("FRESHD_CLIENT_TRANSPORT", "direct")
    with Client(index_dir=str(world.index)) as c:
        assert c.transport == "direct"
    monkeypatch.setenv("FRESHD_CLIENT_TRANSPORT", "carrier-pigeon")
    with pytest.raises(FreshdError, match="FRESHD_CLIENT_TRANSPORT' has value 'carrier-pigeon'"):
        Client(index_dir=str(world.index)).open()


def test_client_states(world: World) -> None:
    path = world.package("core", tree=A)
    c = world.client()
    assert c.is_fresh(path, A) is True  # the first query opens it
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.is_fresh(path, A)
    with pytest.raises(RuntimeError, match="closed"):
        c.open()
    c.close()  # idempotent


def test_clients_share_one_environment(world: World) -> None:
    path = world.package("core", tree=A)
    with world.client() as one, world.client() as two:
        assert one.is_fresh(path, A) and two.is_fresh(path, A)
    with world.client() as three:
        assert three.is_fresh(path, A) is True


def test_a_rebuilt_index_is_adopted(world: World, tmp_path: Path) -> None:
    path = world.package("core", tree=A)
    with world.client() as c:
        assert c.is_fresh(path, A) is True
        world.fake.close()
        shutil.rmtree(world.index)
        world.fake = FakeDaemon(world.index)
        world.package("core", tree=B)
        wait_for(lambda: c.is_fresh(path, B) is True)
        assert c.is_fresh(path, A) is False


# -- records ----------------------------------------------------------------------------


def test_lookup_by_path_and_by_name(world: World) -> None:
    path = world.package("core", tree=A, meta=M, files=7, generation=3)
    twin_a = world.package("twin_a", tree=A)
    world.fake.package(twin_a, str(world.root), name="twin", tree=A, state="clean")
    twin_b = world.package("twin_b", tree=A)
    world.fake.package(twin_b, str(world.root), name="twin", tree=A, state="clean")
    with world.client() as c:
        expected = {
            "name": "core",
            "path": path,
            "state": "clean",
            "tree": A,
            "meta": M,
            "files": 7,
            "generation": 3,
            "error": None,
        }
        assert c.lookup(path) == expected
        assert c.lookup(name="core") == expected
        assert c.lookup(name="CORE") == expected  # normalized like the index's names
        assert c.lookup(str(world.root / "none")) is None
        assert c.lookup(name="none") is None
        with pytest.raises(AmbiguousNameError, match="twin"):
            c.lookup(name="Twin")
        with pytest.raises(ValueError, match="exactly one"):
            c.lookup()
        assert [p["path"] for p in c.packages()] == sorted([path, twin_a, twin_b])


# -- sync -------------------------------------------------------------------------------


def test_sync_sees_changes_the_fast_path_has_not_yet(world: World) -> None:
    path = world.package("core", tree=A)
    world.package("core", tree=B, pending=True)  # seen by the "watcher", not yet processed
    with world.client() as c:
        assert c.is_fresh(path, A) is True  # fast: the index as it stands
        assert c.is_fresh(path, A, consistency="sync") is False
        assert c.is_fresh(path, A) is False
        assert c.is_fresh(path, B, consistency="sync") is True
    assert not [n for n in os.listdir(world.root) if n.startswith(COOKIE_PREFIX)]


def test_sync_finds_the_root_of_a_package_not_indexed_yet(world: World) -> None:
    path = str(world.root / "new")
    os.mkdir(path)
    world.fake.package(path, str(world.root), name="new", state="clean", tree=A, pending=True)
    with world.client() as c:
        assert c.is_fresh(path, A) is None
        assert c.check_many([(path, A)], consistency="sync") == [True]


def test_sync_times_out_to_unknown(world: World) -> None:
    path = world.package("core", tree=A)
    world.fake.send("daemon", ack=False)
    with world.client(timeout=0.3) as c:
        start = time.monotonic()
        assert c.is_fresh(path, A, consistency="sync") is None
        assert time.monotonic() - start < 0.3 + 2.0
        assert c.wait_clean(path, timeout=0.2) is None
    assert not [n for n in os.listdir(world.root) if n.startswith(COOKIE_PREFIX)]


def test_sync_falls_back_to_http_when_no_cookie_can_be_written(world: World) -> None:
    gone = world.root / "gone"  # a root the client cannot write into
    path = world.root / "core"
    path.mkdir()
    world.fake.package(str(path), str(gone), name="core", state="clean", tree=A)
    answer = {"results": [{"path": str(path), "fresh": False, "state": "clean", "digest": B}]}
    with tempfile.TemporaryDirectory(prefix="fd") as sock_dir:
        server = FakeServer(
            lambda m, p, b: (200, {**answer, "synced": True}), socket_path=sock_dir + "/s"
        )
        try:
            with world.client(socket_path=server.address) as c:
                assert c.is_fresh(str(path), A) is True
                assert c.is_fresh(str(path), A, consistency="sync") is False
        finally:
            server.close()
    method, route, body, _headers = server.requests[-1]
    assert (method, route) == ("POST", "/v1/fresh")
    assert body == {
        "items": [{"path": str(path), "digest": A, "scope": "tree"}],
        "sync": True,
        "timeout_ms": 5000,
    }


def test_wait_clean_returns_the_settled_record(world: World) -> None:
    path = world.package("core", state="dirty", tree=A)
    world.package("core", tree=B, pending=True)
    with world.client() as c:
        info = c.wait_clean(path, timeout=DEADLINE)
        assert info is not None and (info["state"], info["tree"]) == ("clean", B)
        world.package("core", state="error", error="cannot read x", pending=True)
        info = c.wait_clean(path, timeout=DEADLINE)
        assert info is not None and info["error"] == "cannot read x"


# -- concurrency ------------------------------------------------------------------------

READER = textwrap.dedent(
    """
    import sys
    from freshd_client import Client
    index, stable, flipping, a, b, n = sys.argv[1:]
    seen = set()
    with Client(index_dir=index, transport="direct") as c:
        for i in range(int(n)):
            assert c.is_fresh(stable, a) is True, "stable package not fresh"
            answer = c.is_fresh(flipping, a)
            assert answer is not True, "fresh for a digest that was never clean"
            seen.add(answer)
            assert c.check_many([(stable, a), (flipping, b)])[0] is True
    print(sorted(map(repr, seen)))
    """
)


def test_concurrent_readers_in_several_processes_while_the_writer_writes(world: World) -> None:
    stable = world.package("stable", tree=A)
    flipping = world.package("flipping", tree=B)
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(world.index), stable, flipping, A, B, "20000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    # Digest A is on the flipping package only while it is not clean: never fresh.
    states = [("dirty", A), ("clean", B), ("unknown", A), ("error", A), ("clean", B)]
    rounds = 0
    while any(r.poll() is None for r in readers) or rounds < 5:
        state, tree = states[rounds % len(states)]
        world.package("flipping", state=state, tree=tree, error="e" if state == "error" else None)
        world.fake.send("churn", n=200, size=400)  # grows the map under the readers
        rounds += 1
        assert rounds < 100_000
    for reader in readers:
        out, err = reader.communicate(timeout=DEADLINE)
        assert reader.returncode == 0, err
        assert "True" not in out


def test_the_protocol_document_states_the_schemas_constants() -> None:
    from freshd_client.spec import schema as sc

    doc = (Path(__file__).resolve().parent.parent / "docs" / "client-protocol.md").read_text()
    assert sc.DAEMON_HEAD.size == 24
    # the tree and meta digests follow a 24-byte prefix of the package head
    assert struct.calcsize(sc.PACKAGE_HEAD.format[:-6]) == 24
    assert sc.PACKAGE_HEAD.format.endswith("32s32s")
    statuses = ", ".join(f"{i} `{s}`" for i, s in enumerate(sc.DAEMON_STATUSES))
    assert f"u8 status: {statuses}" in doc
    assert sc.LIVENESS_NS == 5_000_000_000 and "< 5_000_000_000" in doc
    assert f"this document is\n   version `{sc.SCHEMA_VERSION}`" in doc
    assert sc.STATE_CODES["clean"] == 2 and sc.DAEMON_STATUSES.index("ready") == 2
