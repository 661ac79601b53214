"""``.gitignore`` semantics, proven against the real ``git`` (issue 19).

Each case is a tree with rule files; freshd's walk (no ``[tool.freshd]``, no default
exclusion hit by the names used) must keep exactly the files ``git ls-files -o
--exclude-standard`` lists. The hand-written table holds every case of issue 19 (where
pathspec's ``GitIgnoreSpec``, the matcher before, disagreed with git) and the examples
of gitignore(5); the seeded generator draws trees and rule files with negations,
``**``, anchors, directory-only patterns, classes, escapes, non-ASCII names and nested
and symlinked ``.gitignore`` files. ``make soak`` keeps drawing seeds
(``--soak-seed``/``--soak-minutes``).

``[tool.freshd]`` patterns are tested the same way: ``exclude`` must drop what git
ignores with the same lines as a ``.gitignore``, and ``include`` (with everything else
excluded) must re-admit exactly what git ignores.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest

from churn_model import soak_seeds
from freshd_client.content.fileset import walk
from freshd_client.content.ignore import RuleList, split_lines
from freshd_client.content.project import Project
from git_oracle import Case, Git, files_of, generate, materialize

RANDOM_CASES = 300  # in make test
BATCH = 20


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Git:
    if shutil.which("git") is None:
        pytest.fail("git is needed: it is the oracle of .gitignore semantics")
    return Git(tmp_path_factory.mktemp("git-oracle"))


def freshd_kept(root: Path, project: Project | None = None) -> set[bytes]:
    walked = walk(str(root), project or Project())
    assert walked.errors == []
    return {os.fsencode(f.rel) for f in walked.files}


def disagreement(git: Git, root: Path, case: Case) -> str | None:
    """None when freshd keeps what git keeps; else a description of the difference."""
    ours, theirs = freshd_kept(root), git.kept(root)
    if ours == theirs:
        return None
    return (
        f"freshd keeps and git ignores: {sorted(ours - theirs)!r}\n"
        f"git keeps and freshd drops: {sorted(theirs - ours)!r}\n{case.describe()}"
    )


# -- the hand-written table ------------------------------------------------------------

F = b"f"
TABLE: dict[str, tuple[dict[bytes, bytes], list[bytes]]] = {
    # issue 19: pathspec pruned logs/ itself, so keep could never come back
    "dir-contents-then-negation": (
        {b"": b"logs/**\n!logs/keep\n"},
        [b"logs/keep", b"logs/a.log", b"logs/sub/b", b"other"],
    ),
    "dir-contents-and-a-deeper-negation": (
        {b"": b"a/**\n", b"a": b"!x\n"},
        [b"a/x", b"a/y", b"a/b/x", b"z"],
    ),
    "whitelist": ({b"": b"/*\n!src\n"}, [b"src/a.py", b"src/d/b.py", b"top.txt", b"doc/c"]),
    "whitelist-dir-only": ({b"": b"/*\n!/src/\n"}, [b"src/a.py", b"srcfile", b"x/src/y"]),
    "deeper-dir-pattern-negation": (
        {b"": b"*\n!*/\n", b"a": b"!*/\n"},
        [b"a/b/c.txt", b"a/d.txt", b"e.txt"],
    ),
    "negation-of-file-below-ignored-dir": (
        {b"": b"a.txt/\n!a.txt\n"},
        [b"a.txt/b", b"c/a.txt/d", b"a.txt2"],
    ),
    "negation-below-ignored-dir-cannot-reinclude": (
        {b"": b"build2/\n!build2/keep\n"},
        [b"build2/keep", b"build2/x"],
    ),
    # ? and [...] match a byte: "é" is two bytes in UTF-8
    "question-mark-is-a-byte": ({b"": b"caf?.txt\n"}, ["café.txt".encode(), b"cafe.txt"]),
    "two-question-marks-match-a-two-byte-char": (
        {b"": b"caf??.txt\n"},
        ["café.txt".encode(), b"cafe.txt", b"cafxy.txt"],
    ),
    "class-matches-a-byte": (
        {b"": b"caf[\xc3]?.txt\n[\x80-\xff]*\n"},
        ["café.txt".encode(), "ü.md".encode(), b"u.md", b"caf\xe9.txt"],
    ),
    "bom-is-skipped": ({b"": b"\xef\xbb\xbfa.txt\n"}, [b"a.txt", b"b.txt"]),
    "bom-only-at-the-start": ({b"": b"b.txt\n\xef\xbb\xbfa.txt\n"}, [b"a.txt", b"b.txt"]),
    "trailing-tab-is-kept": ({b"": b"a.txt\t\n"}, [b"a.txt", b"a.txt\t"]),
    "trailing-spaces-are-stripped": ({b"": b"a.txt   \n"}, [b"a.txt", b"a.txt "]),
    "escaped-trailing-space-is-kept": ({b"": b"a\\ \n"}, [b"a", b"a "]),
    "escaped-space-then-more-spaces": ({b"": b"a\\   \n"}, [b"a", b"a ", b"a  "]),
    "escaped-backslash-then-space": ({b"": b"a\\\\ \n"}, [b"a\\", b"a\\ "]),
    "crlf-line-ends": ({b"": b"a.txt\r\nb.txt\r\n"}, [b"a.txt", b"b.txt", b"c.txt"]),
    "lone-cr-is-part-of-a-pattern": ({b"": b"a.txt\rb.txt\n"}, [b"a.txt", b"b.txt"]),
    "splitlines-separators-are-not-line-ends": (
        {b"": b"a\x0cb\na\x0bb\na\xe2\x80\xa8b\na\x1cb\n"},
        [b"a", b"b", b"a\x0cb", b"a\x0bb", "a\u2028b".encode(), b"a\x1cb"],
    ),
    "no-final-newline": ({b"": b"a.txt"}, [b"a.txt", b"b.txt"]),
    "symlinked-gitignore-is-not-read": ({b"sub": b"*\n"}, [b"sub/a.txt", b"b.txt"]),
    # gitignore(5) examples
    "doc-hello-star": ({b"": b"hello.*\n"}, [b"hello.c", b"a/hello.txt", b"hello"]),
    "doc-foo-slash": ({b"": b"foo/\n"}, [b"foo/x", b"a/foo/y", b"foo2/z"]),
    "doc-doc-frotz": ({b"": b"doc/frotz/\n"}, [b"doc/frotz/x", b"a/doc/frotz/y"]),
    "doc-frotz-anywhere": ({b"": b"frotz/\n"}, [b"doc/frotz/x", b"a/doc/frotz/y"]),
    "doc-leading-double-star": ({b"": b"**/foo\n**/foo/bar\n"}, [b"foo", b"a/foo", b"b/foo/bar"]),
    "doc-trailing-double-star": ({b"": b"abc/**\n"}, [b"abc/x", b"abc/d/y", b"abcd"]),
    "doc-middle-double-star": (
        {b"": b"a/**/b\n"},
        [b"a/b", b"a/x/b", b"a/x/y/b", b"a/xb", b"ab"],
    ),
    "doc-exclude-everything-but-foo-bar": (
        {b"": b"/*\n!/foo\n/foo/*\n!/foo/bar\n"},
        [b"foo/bar/x", b"foo/baz", b"top"],
    ),
    "doc-escaped-bang-and-hash": (
        {b"": b"\\!important!.txt\n\\#hash\n#comment\n"},
        [b"!important!.txt", b"#hash", b"#comment", b"comment"],
    ),
    "doc-anchored-vs-not": (
        {b"": b"/foo.txt\nbar.txt\n"},
        [b"foo.txt", b"a/foo.txt", b"a/bar.txt"],
    ),
    "doc-middle-slash-anchors": ({b"": b"doc/frotz\n"}, [b"doc/frotz", b"a/doc/frotz"]),
    # wildmatch details
    "star-does-not-cross-slash": ({b"": b"a/*.txt\n"}, [b"a/x.txt", b"a/b/x.txt"]),
    "double-star-not-at-a-boundary-is-a-star": ({b"": b"a/x**\n"}, [b"a/xy", b"a/xz/z"]),
    "literal-prefix-then-double-star": ({b"": b"a**/b\n"}, [b"ab", b"a/b", b"ax/b", b"a/c/b"]),
    "escaped-slash-after-double-star": ({b"": b"a/**\\/b\n"}, [b"a/b", b"a/x/b"]),
    "unterminated-class-matches-nothing": ({b"": b"[ab\n"}, [b"[ab", b"a"]),
    "malformed-posix-class-matches-nothing": ({b"": b"[[:nope:]]\n"}, [b"a", b"["]),
    "posix-class": ({b"": b"x[[:digit:]]\n"}, [b"x1", b"xa"]),
    "bracket-colon-without-close-is-a-bracket": ({b"": b"x[[:a]\n"}, [b"x[", b"x:", b"xa"]),
    "close-bracket-first-in-class": ({b"": b"x[]a]\n"}, [b"x]", b"xa", b"xb"]),
    "negated-class": ({b"": b"x[!a]\nq[^b]\n"}, [b"xa", b"xb", b"qa", b"qb"]),
    "range-and-trailing-dash": ({b"": b"x[a-c-]\n"}, [b"xb", b"x-", b"xd"]),
    "escaped-range-end": ({b"": b"x[a-\\c]\n"}, [b"xb", b"x\\", b"xd"]),
    "trailing-backslash-matches-nothing": ({b"": b"a\\\n"}, [b"a", b"a\\"]),
    "bang-alone-and-slash-alone": ({b"": b"!\n/\n*.txt\n"}, [b"a.txt", b"b"]),
    "dir-only-does-not-match-a-symlink": ({b"": b"lnk/\n"}, [b"lnk"]),
    "deepest-file-decides": (
        {b"": b"*.log\n", b"sub": b"!important.log\n"},
        [b"a.log", b"sub/important.log", b"sub/other.log"],
    ),
    "ignored-dir-hides-deeper-gitignore": (
        {b"": b"sub/\n", b"sub": b"!*\n"},
        [b"sub/a", b"x"],
    ),
}


LINKED_RULES = {"symlinked-gitignore-is-not-read"}


def _materialize_table(root: Path, rules: dict[bytes, bytes], files: list[bytes]) -> Case:
    case = Case(files=dict.fromkeys(files, "f"), rules=rules)
    if b"lnk" in files:
        case.files[b"lnk"] = "l"
    if root.name in LINKED_RULES:
        case.linked_rules = [b"sub"]
    materialize(root, case)
    return case


@pytest.mark.parametrize("name", sorted(TABLE))
def test_table_agrees_with_git(git: Git, tmp_path: Path, name: str) -> None:
    rules, files = TABLE[name]
    root = tmp_path / name
    case = _materialize_table(root, rules, files)
    problem = disagreement(git, root, case)
    assert problem is None, problem
    # the oracle run is not vacuous: git's two listings split the tree's files
    assert git.kept(root) | git.ignored(root) == files_of(root)


def test_symlinked_gitignore_is_not_read(git: Git, tmp_path: Path) -> None:
    root = tmp_path / "symlinked-gitignore-is-not-read"
    _materialize_table(root, *TABLE["symlinked-gitignore-is-not-read"])
    assert os.path.islink(root / "sub" / ".gitignore")
    kept = freshd_kept(root)
    assert b"sub/a.txt" in kept
    assert b"sub/.gitignore" in kept  # a member of the set, as a link
    assert kept == git.kept(root)
    assert walk(str(root), Project()).gitignores == []


# -- seeded random cases ---------------------------------------------------------------


def run_seeds(git: Git, base: Path, seeds: list[int]) -> list[str]:
    problems = []
    for seed in seeds:
        rng = random.Random(seed)  # noqa: S311 (reproducible by seed, not secret)
        case = generate(rng)
        root = base / f"case{seed}"
        materialize(root, case)
        problem = disagreement(git, root, case)
        if problem is not None:
            problems.append(f"seed {seed}:\n{problem}")
        shutil.rmtree(root)
    return problems


@pytest.mark.parametrize("batch", range(RANDOM_CASES // BATCH))
def test_random_trees_agree_with_git(git: Git, tmp_path: Path, batch: int) -> None:
    seeds = list(range(batch * BATCH, (batch + 1) * BATCH))
    problems = run_seeds(git, tmp_path, seeds)
    assert not problems, "\n\n".join(problems[:3])


@pytest.mark.parametrize("seed", range(40))
def test_rule_lists_agree_with_git_check_ignore(git: Git, tmp_path: Path, seed: int) -> None:
    """The matcher alone, path by path (directories too): ``git check-ignore --no-index``
    with one ``.gitignore`` at the top, against ``RuleList.decide`` applied to the path
    and each directory above it (git's rule: an excluded directory excludes all below)."""
    rng = random.Random(seed)  # noqa: S311
    case = generate(rng, nested_rules=False)
    raw = case.rules[b""]
    root = tmp_path / "t"
    materialize(root, case)
    rules = RuleList(split_lines(raw))
    probes: set[tuple[bytes, bool]] = set()
    for rel in case.files:
        parts = rel.split(b"/")
        probes |= {(b"/".join(parts[: i + 1]), i < len(parts) - 1) for i in range(len(parts))}
    theirs = git.check_ignore(root, sorted(p for p, _ in probes))
    for path, is_dir in sorted(probes):
        parts = path.split(b"/")
        ours = any(
            rules.decide(b"/".join(parts[: i + 1]), i < len(parts) - 1 or is_dir)
            for i in range(len(parts))
        )
        # any() stops at the first directory that decides True; a False (negation) above
        # does not stop the search, as in git
        assert ours == (path in theirs), (raw, path)


@pytest.mark.soak
@pytest.mark.timeout(0)
def test_random_trees_agree_with_git_soak(
    git: Git, tmp_path: Path, pytestconfig: pytest.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    options = pytestconfig.getoption("soak_seed"), pytestconfig.getoption("soak_minutes")
    first, cases, problems = None, 0, []
    for seed in soak_seeds(*options):
        first = seed if first is None else first
        problems += run_seeds(git, tmp_path, [seed])
        cases += 1
        if problems:
            break
    with capsys.disabled():
        print(
            f"\n.gitignore soak: {cases} cases from seed {first}, "
            f"{len(problems)} disagreements, {time.monotonic() - started:.0f} s"
        )
    assert not problems, "\n\n".join(problems[:3])


# -- [tool.freshd] include / exclude -----------------------------------------------------


def _lines(raw: bytes) -> tuple[str, ...]:
    return tuple(raw.decode("utf-8", "surrogateescape").split("\n"))


@pytest.mark.parametrize("seed", range(60))
def test_freshd_exclude_drops_what_git_ignores(git: Git, tmp_path: Path, seed: int) -> None:
    """``exclude`` = the lines of a ``.gitignore`` at the package top."""
    rng = random.Random(10_000 + seed)  # noqa: S311
    case = generate(rng, nested_rules=False)
    raw = case.rules.pop(b"")
    root = tmp_path / "t"
    materialize(root, case)
    project = Project(exclude=_lines(raw))
    ours = freshd_kept(root, project)
    (root / ".gitignore").write_bytes(raw)
    assert ours == git.kept(root) - {b".gitignore"}, case.describe() + f"\nexclude {raw!r}"


@pytest.mark.parametrize("seed", range(60))
def test_freshd_include_readmits_what_git_ignores(git: Git, tmp_path: Path, seed: int) -> None:
    """With everything excluded, ``include`` re-admits exactly what git would ignore with
    the same lines as a ``.gitignore``: the last match wins, ``!`` takes back, and an
    included directory takes everything below it."""
    rng = random.Random(20_000 + seed)  # noqa: S311
    case = generate(rng, nested_rules=False)
    raw = case.rules.pop(b"")
    root = tmp_path / "t"
    materialize(root, case)
    project = Project(include=_lines(raw), exclude=("*",))
    ours = freshd_kept(root, project)
    (root / ".gitignore").write_bytes(raw)
    assert ours == git.ignored(root) - {b".gitignore"}, case.describe() + f"\ninclude {raw!r}"


def test_freshd_exclude_negation_only_takes_back_its_own_patterns(tmp_path: Path) -> None:
    """A ``!`` in ``exclude`` cancels an earlier ``exclude`` pattern, not a .gitignore's
    (``include`` is what re-admits those)."""
    root = tmp_path / "p"
    case = Case(files={b"a.log": "f", b"b.log": "f", b"c.txt": "f"}, rules={b"": b"a.log\n"})
    materialize(root, case)
    kept = freshd_kept(root, Project(exclude=("*.log", "!*.log", "c.txt")))
    assert kept == {b".gitignore", b"b.log"}
    kept = freshd_kept(root, Project(include=("a.log",)))
    assert b"a.log" in kept


@pytest.mark.parametrize(
    ("rules", "listed"),
    [
        (b"logs/\n", {"", "src"}),
        (b"logs/**\n!logs/keep\n", {"", "src", "logs"}),  # logs/ itself is not excluded
        (b"/*\n!src/\n", {"", "src"}),
        (b"*\n!*/\n", {"", "src", "logs", "logs/sub", "logs/sub/deep"}),
    ],
)
def test_the_walk_lists_no_directory_git_excludes(
    git: Git, tmp_path: Path, rules: bytes, listed: set[str]
) -> None:
    """Pruning: an excluded directory is never listed (nothing below it can come back),
    and one git does not exclude is."""
    root = tmp_path / "t"
    case = Case(
        files=dict.fromkeys([b"src/a.py", b"logs/keep", b"logs/sub/deep/x.log"], "f"),
        rules={b"": rules},
    )
    materialize(root, case)
    dirs: list[tuple[str, os.stat_result]] = []
    walked = walk(str(root), Project(), dirs=dirs)
    assert {rel for rel, _st in dirs} == listed
    assert {os.fsencode(f.rel) for f in walked.files} == git.kept(root)
