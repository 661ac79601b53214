"""The paths the HTTP client asks the daemon about: canonical, whatever form was given.

The daemon looks paths up in its index by their canonical name, so the client resolves
each one first (``os.path.realpath``): through absolute and relative symlinks, ``..``
after a symlink, relative to the working directory, and to the name a missing, dangling
or looping path would have. A fake daemon records what was asked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client_fakes import FakeServer
from freshd_client import Client

TREE = "b3t2:" + "ab" * 32


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = Path(os.path.realpath(tmp_path)) / "t"
    (root / "d/e").mkdir(parents=True)
    (root / "d/f").write_text("f\n")
    (root / "new\nline").mkdir()
    (root / os.fsdecode(b"caf\xe9")).mkdir()
    os.mkfifo(root / "fifo")
    links = {
        "abs": str(root / "d"),
        "rel": "d/e",
        "up": "d/e/..",
        "d/e/back": "../../d",
        "tofile": "d/f",
        "dangling": "nowhere",
        "loop1": "loop2",
        "loop2": "loop1",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    monkeypatch.chdir(root / "d")
    return root


@pytest.fixture
def asked(tree: Path) -> Iterator[tuple[Client, list[Any]]]:
    """A client over HTTP to a fake daemon; the list of request bodies and targets."""
    seen: list[Any] = []

    def route(method: str, target: str, body: Any) -> tuple[int, Any]:
        seen.append(body if method == "POST" else target)
        if method == "GET":
            return 404, {"error": {"code": "not_found", "message": "not indexed"}}
        results = [
            {"path": i["path"], "fresh": None, "state": "unknown", "digest": None}
            for i in body["items"]
        ]
        return 200, {"results": results, "synced": False}

    sock_dir = tree / "s"
    sock_dir.mkdir()
    server = FakeServer(route, socket_path=str(sock_dir / "sock"))
    try:
        with Client(socket_path=server.address, transport="http") as client:
            yield client, seen
    finally:
        server.close()


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("{t}/d/e", "{t}/d/e"),
        ("{t}/d/e/", "{t}/d/e"),
        ("{t}//d/./e", "{t}/d/e"),
        ("{t}/abs/e", "{t}/d/e"),  # an absolute symlink
        ("{t}/rel", "{t}/d/e"),  # a relative one
        ("{t}/up", "{t}/d"),  # a symlink to d/e/..: .. after resolving, not before
        ("{t}/abs/e/back/f", "{t}/d/f"),  # symlinks within symlinks
        ("{t}/tofile", "{t}/d/f"),
        ("{t}/fifo", "{t}/fifo"),
        ("{t}/new\nline", "{t}/new\nline"),
        ("{t}/caf\udce9", "{t}/caf\udce9"),  # a name that is not UTF-8
        ("e", "{t}/d/e"),  # relative to the working directory
        ("../abs/../d/f", "{t}/d/f"),
        ("{t}/missing/x", "{t}/missing/x"),
        ("{t}/dangling", "{t}/nowhere"),  # the name it would have
        ("{t}/loop1", "{t}/loop1"),  # a loop: resolved as far as it goes
    ],
)
def test_the_daemon_is_asked_about_the_canonical_path(
    tree: Path, asked: tuple[Client, list[Any]], given: str, canonical: str
) -> None:
    client, seen = asked
    path, want = given.format(t=tree), canonical.format(t=tree)
    assert client.is_fresh(path, TREE) is None
    assert seen[-1]["items"] == [{"path": want, "digest": TREE, "scope": "tree"}]
    assert client.check_many([(path, TREE), ("/", TREE)]) == [None, None]
    assert [i["path"] for i in seen[-1]["items"]] == [want, "/"]
    assert client.lookup(path) is None
    assert seen[-1] == "/v1/packages/lookup?path=" + _quoted(want)


def _quoted(path: str) -> str:
    from urllib.parse import quote

    return quote(os.fsencode(path))
