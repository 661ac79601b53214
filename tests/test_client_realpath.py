"""The client's ``_realpath``: exactly ``os.path.realpath``, only faster when the path is
already canonical (the kernel resolves it in one open(O_PATH), /proc names the result).

Every generated path over a tree of symlinks (absolute, relative, through ``..``,
dangling, looping), a FIFO, odd names and missing entries must give what
``os.path.realpath`` gives, or raise what it raises, and leave no descriptor open.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from freshd_client import client as client_module
from freshd_client.client import _realpath

NAMES = [
    "d",
    "e",
    "f",
    "fifo",
    "abs",
    "rel",
    "up",
    "back",
    "tofile",
    "dangling",
    "loop1",
    "self",
    "x (deleted)",
    "new\nline",
    "caf" + os.fsdecode(b"\xe9"),
    "missing",
    ".",
    "..",
    "",
    "a\x00b",
]


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "t"
    (root / "d/e").mkdir(parents=True)
    (root / "d/f").write_text("f\n")
    (root / "x (deleted)").mkdir()
    (root / "new\nline").mkdir()
    (root / os.fsdecode(b"caf\xe9")).mkdir()
    os.mkfifo(root / "fifo")
    links = {
        "abs": str(root / "d"),
        "rel": "d/e",
        "up": "d/e/..",
        "d/back": "..",
        "d/e/back": "../../d",
        "tofile": "d/f",
        "dangling": "nowhere",
        "loop1": "loop2",
        "loop2": "loop1",
        "self": "self",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    monkeypatch.chdir(root / "d")
    return root


def outcome(fn: Callable[[str], str], path: str) -> tuple[str, object]:
    try:
        return "returned", fn(path)
    except Exception as exc:  # what realpath raises, _realpath must raise
        return "raised", type(exc)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    start=st.sampled_from(["root", "root/", "", "/", "//", "///"]),
    parts=st.lists(st.sampled_from(NAMES), max_size=5),
    trailing=st.sampled_from(["", "/"]),
)
def test_the_same_as_os_path_realpath(
    tree: Path, start: str, parts: list[str], trailing: str
) -> None:
    prefix = start.replace("root", str(tree))
    path = prefix + "/".join(parts) + trailing
    before = open_fds()
    assert outcome(_realpath, path) == outcome(os.path.realpath, path), repr(path)
    assert open_fds() == before


@pytest.mark.parametrize(
    "rel",
    [
        "",
        "d",
        "d/e",
        "d/f",
        "fifo",
        "x (deleted)",
        "new\nline",
        "caf" + os.fsdecode(b"\xe9"),
        "abs",
        "abs/e",
        "d/e/back/f",
        "tofile",
        "up",
        "d/missing",
        "missing/x",
    ],
)
def test_canonical_and_linked_paths(tree: Path, rel: str) -> None:
    for path in (os.path.realpath(tree / rel), os.path.join(tree, rel)):
        assert _realpath(path) == os.path.realpath(path), repr(path)
    assert _realpath("/") == "/"


@pytest.mark.skipif(not hasattr(os, "O_PATH"), reason="open(O_PATH) is Linux's")
def test_a_canonical_path_is_not_walked_in_python(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canonical = os.path.realpath(tree / "d/e")
    through_a_link = str(tree / "abs/e")

    def walked(path: str) -> str:
        raise AssertionError(f"os.path.realpath({path!r}) was called")

    monkeypatch.setattr(client_module.os.path, "realpath", walked)
    assert _realpath(canonical) == canonical
    with pytest.raises(AssertionError, match="was called"):
        _realpath(through_a_link)
