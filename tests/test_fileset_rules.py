"""Pattern rules (``.gitignore``, ``[tool.freshd]``) compiled once per distinct content."""

from __future__ import annotations

from pathlib import Path

from conftest import PYPROJECT, make_tree
from freshd_client.content.fileset import _rules, walk
from freshd_client.content.project import read_project


def test_packages_with_the_same_rules_share_them_and_others_do_not(tmp_path: Path) -> None:
    one = _rules((b"*.log", b"build/"))
    assert one is not None
    assert _rules((b"*.log", b"build/")) is one  # compiled once
    other = _rules((b"*.log",))
    assert other is not None and other is not one
    assert other.decide(b"b.log", False) and other.decide(b"build", True) is None
    assert one.decide(b"build", True)
    assert _rules(()) is None
    for name, ignore in (("p", "*.log\n"), ("q", "*.txt\n")):
        make_tree(tmp_path / name, {"pyproject.toml": PYPROJECT, ".gitignore": ignore})
        make_tree(tmp_path / name, {"a.log": "", "a.txt": ""})
    walked = {
        name: {f.rel for f in walk(str(tmp_path / name), read_project(str(tmp_path / name))).files}
        for name in ("p", "q")
    }
    assert walked["p"] == {"pyproject.toml", ".gitignore", "a.txt"}
    assert walked["q"] == {"pyproject.toml", ".gitignore", "a.log"}
