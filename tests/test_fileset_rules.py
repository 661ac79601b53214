"""Pattern rules (``.gitignore``, ``[tool.freshd]``): pathspec decides, a joined regular
expression only answers "no pattern matches" first. Its answers must be pathspec's."""

from __future__ import annotations

import random
from pathlib import Path

import pathspec
import pytest

from conftest import PYPROJECT, make_tree
from freshd_client.fileset import Rules, _spec, walk
from freshd_client.project import read_project

PATTERNS = [
    "*.log",
    "!keep.log",
    "build/",
    "/dist",
    "docs/**/*.md",
    "a/**/b",
    "**/cache",
    "!**/cache/keep",
    "*.py[co]",
    "[abc]*.txt",
    "?.cfg",
    "\\!bang",
    "\\#hash",
    "trailing\\ ",
    "nested/dir/",
    "!nested/dir/ok/",
    "*",
    "!*.py",
    "/*/deep",
    "x/",
    "# a comment",
    "",
]
NAMES = ["a", "b", "x", "keep.log", "z.log", "m.py", "m.pyc", "c.txt", "q.cfg", "!bang", "#hash"]
NAMES += ["trailing ", "cache", "keep", "deep", "build", "dist", "docs", "nested", "dir", "ok"]


def _paths(rng: random.Random, n: int) -> list[str]:
    paths = []
    for _ in range(n):
        parts = [rng.choice(NAMES) for _ in range(rng.randint(1, 4))]
        paths.append("/".join(parts) + ("/" if rng.random() < 0.3 else ""))
    return paths


@pytest.mark.parametrize("seed", range(60))
def test_rules_answer_as_pathspec_does(seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 (reproducible by seed, not secret)
    lines = rng.sample(PATTERNS, rng.randint(1, 8))
    spec = pathspec.GitIgnoreSpec.from_lines(lines)
    rules = Rules(spec)
    assert rules._any is not None  # the fast answer is in use for these patterns
    for path in _paths(rng, 200):
        assert rules.match(path) == spec.match_file(path), (lines, path)
        assert rules.decide(path) == spec.check_file(path).include, (lines, path)


def test_rules_without_a_pattern_match_nothing() -> None:
    rules = Rules(pathspec.GitIgnoreSpec.from_lines(["# only a comment", ""]))
    assert not rules.match("anything")
    assert rules.decide("anything") is None


def test_packages_with_the_same_rules_share_them_and_others_do_not(tmp_path: Path) -> None:
    one = _spec(["*.log", "build/"])
    assert one is not None
    assert _spec(("*.log", "build/")) is one  # compiled once
    other = _spec(["*.log"])
    assert other is not None and other is not one
    assert other.match("b.log") and not other.match("build/")
    assert one.match("build/")
    for name, ignore in (("p", "*.log\n"), ("q", "*.txt\n")):
        make_tree(tmp_path / name, {"pyproject.toml": PYPROJECT, ".gitignore": ignore})
        make_tree(tmp_path / name, {"a.log": "", "a.txt": ""})
    walked = {
        name: {f.rel for f in walk(str(tmp_path / name), read_project(str(tmp_path / name))).files}
        for name in ("p", "q")
    }
    assert walked["p"] == {"pyproject.toml", ".gitignore", "a.txt"}
    assert walked["q"] == {"pyproject.toml", ".gitignore", "a.log"}
