"""The real ``git`` as the oracle of ``.gitignore`` semantics, and a seeded generator of
trees and rule files for the differential tests (``tests/test_ignore_git.py``).

git runs with no system, global or user configuration (``GIT_CONFIG_NOSYSTEM``, an
empty ``HOME`` and ``XDG_CONFIG_HOME``, ``GIT_CONFIG_GLOBAL=/dev/null``) and a git
directory whose ``info/exclude`` is removed, so only the ``.gitignore`` files of the
tree decide. Paths are bytes throughout (``-z``), as git matches them.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

GIT_TIMEOUT_S = 30


class Git:
    """``git ls-files`` over any work tree, with one private git directory."""

    def __init__(self, scratch: Path) -> None:
        home = scratch / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "LC_ALL": "C",
        }
        self.git_dir = scratch / "oracle.git"
        self._git("init", "-q", "--bare", str(self.git_dir))
        exclude = self.git_dir / "info" / "exclude"
        if exclude.exists():
            exclude.unlink()

    def _git(self, *args: str, cwd: Path | None = None) -> bytes:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        )
        return proc.stdout

    def _ls(self, tree: Path, *flags: str) -> set[bytes]:
        out = self._git(
            f"--git-dir={self.git_dir}",
            f"--work-tree={tree}",
            "ls-files",
            "-z",
            "-o",
            *flags,
            "--exclude-standard",
            cwd=tree,
        )
        return {p for p in out.split(b"\0") if p}

    def kept(self, tree: Path) -> set[bytes]:
        """The files of ``tree`` that git does not ignore (``ls-files -o --exclude-standard``)."""
        return self._ls(tree)

    def ignored(self, tree: Path) -> set[bytes]:
        """The files git ignores (``ls-files -o -i --exclude-standard``)."""
        return self._ls(tree, "-i")

    def check_ignore(self, tree: Path, paths: list[bytes]) -> set[bytes]:
        """``git check-ignore --no-index``: which of the existing ``paths`` (relative) git
        ignores (a directory is known as one by its lstat)."""
        proc = subprocess.run(
            [
                "git",
                f"--git-dir={self.git_dir}",
                f"--work-tree={tree}",
                "check-ignore",
                "-z",
                "--no-index",
                "--stdin",
            ],
            cwd=tree,
            env=self.env,
            input=b"\0".join(paths) + b"\0",
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
        if proc.returncode not in (0, 1):
            raise AssertionError(proc.stderr.decode(errors="replace"))
        return {p for p in proc.stdout.split(b"\0") if p}


def files_of(tree: Path) -> set[bytes]:
    """Every regular file and symlink below ``tree`` (relative, bytes), links not followed."""
    base = os.fsencode(tree)
    found = set()
    for dirpath, dirs, names in os.walk(base):
        for name in names + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            found.add(os.path.relpath(os.path.join(dirpath, name), base))
    return found


# -- the generator ----------------------------------------------------------------------

# Names a tree is made of: plain, dotted, with spaces and TABs, glob characters and
# backslashes as literal bytes, non-ASCII (UTF-8 and a Latin-1 byte that is not UTF-8).
NAMES = [
    b"a",
    b"b",
    b"c",
    b"ab",
    b"abc",
    b"A",
    b"x.txt",
    b"y.txt",
    b"a.log",
    b"keep",
    b"keep.log",
    b"logs",
    b"src",
    b"lib",
    b"doc",
    b"out",
    b"deep",
    b"m.py",
    b"n.md",
    b".hidden",
    b"t ",
    b" s",
    b"sp ace",
    b"tab\t",
    b"caf\xc3\xa9.txt",
    b"\xc3\xa9",
    b"\xc3\xbc.md",
    b"caf\xe9.txt",
    b"[ab]",
    b"a*b",
    b"q?",
    b"#h",
    b"!b",
    b"back\\s",
    b"x1",
    b"x2",
    b"-",
    b"]",
]
DIR_NAMES = [
    b"a",
    b"b",
    b"src",
    b"logs",
    b"lib",
    b"out",
    b"deep",
    b"doc",
    b"x.txt",
    b"\xc3\xa9",
    b"sp ace",
    b"keep",
    b"[ab]",
    b"sub",
]


@dataclass
class Case:
    """A generated tree: files (relative path -> kind) and rule files by directory."""

    files: dict[bytes, str] = field(default_factory=dict)  # "f" file, "l" link to a file
    link_dirs: list[bytes] = field(default_factory=list)  # symlinks to directories
    rules: dict[bytes, bytes] = field(default_factory=dict)  # dir -> .gitignore bytes
    linked_rules: list[bytes] = field(default_factory=list)  # dirs whose .gitignore is a link

    def describe(self) -> str:
        lines = [f"rules {d!r}: {r!r}" for d, r in sorted(self.rules.items())]
        lines += [f"linked .gitignore in {d!r}" for d in self.linked_rules]
        lines += [f"files: {sorted(self.files)!r}"]
        return "\n".join(lines)


def generate(rng: random.Random, *, nested_rules: bool = True) -> Case:
    """A random tree and random rule files drawn from the names in it."""
    case = Case()
    dirs = [b""]
    for _ in range(rng.randint(1, 6)):
        parent = rng.choice(dirs)
        if parent.count(b"/") >= 3:
            continue
        path = (parent + b"/" if parent else b"") + rng.choice(DIR_NAMES)
        if path not in dirs:
            dirs.append(path)
    for _ in range(rng.randint(3, 18)):
        parent = rng.choice(dirs)
        path = (parent + b"/" if parent else b"") + rng.choice(NAMES)
        if path in dirs or any(d.startswith(path + b"/") for d in dirs):
            continue
        case.files[path] = "l" if rng.random() < 0.08 else "f"
    if rng.random() < 0.15:
        parent = rng.choice(dirs)
        link = (parent + b"/" if parent else b"") + b"dirlink"
        if link not in case.files and link not in dirs:
            case.link_dirs.append(link)
    words = sorted({part for p in [*case.files, *dirs] for part in p.split(b"/") if part})
    rule_dirs = [b""] + (
        rng.sample(dirs[1:], min(len(dirs) - 1, rng.randint(0, 2))) if nested_rules else []
    )
    for d in rule_dirs:
        case.rules[d] = rule_file(rng, words, dirs)
        if d and rng.random() < 0.1:
            case.linked_rules.append(d)
    return case


def rule_file(rng: random.Random, words: list[bytes], dirs: list[bytes]) -> bytes:
    """The bytes of a random ``.gitignore``: patterns, comments, blank lines, and the
    line-level details (CR LF, a BOM, trailing spaces and TABs)."""
    lines = [pattern(rng, words, dirs) for _ in range(rng.randint(1, 7))]
    if rng.random() < 0.15:
        lines.insert(rng.randrange(len(lines) + 1), b"# comment " + rng.choice(words))
    if rng.random() < 0.1:
        lines.insert(rng.randrange(len(lines) + 1), b"")
    eol = b"\r\n" if rng.random() < 0.1 else b"\n"
    raw = eol.join(lines) + (eol if rng.random() < 0.8 else b"")
    if rng.random() < 0.1:
        raw = b"\xef\xbb\xbf" + raw
    return raw


def pattern(rng: random.Random, words: list[bytes], dirs: list[bytes]) -> bytes:
    """One random pattern line over the tree's names."""
    roll = rng.random()
    if roll < 0.25 and dirs[1:]:
        parts = rng.choice(dirs[1:]).split(b"/")
        if rng.random() < 0.5:
            parts.append(rng.choice(words))
    else:
        parts = [rng.choice(words) for _ in range(rng.choice((1, 1, 1, 2, 2, 3)))]
    parts = [_mangle(rng, p) for p in parts]
    if rng.random() < 0.12:
        parts.insert(rng.randrange(len(parts) + 1), b"**")
    if rng.random() < 0.06:
        parts[rng.randrange(len(parts))] += b"**"
    text = b"/".join(parts)
    if rng.random() < 0.2:
        text = b"/" + text
    if rng.random() < 0.2:
        text += b"/"
    if rng.random() < 0.08:
        text += b"/**"
    if rng.random() < 0.3:
        text = b"!" + text
    tail = rng.random()
    if tail < 0.05:
        text += b"  "
    elif tail < 0.08:
        text += b"\\ "
    elif tail < 0.1:
        text += b"\t"
    if rng.random() < 0.02:
        text = rng.choice(
            [
                b"*",
                b"**",
                b"!*",
                b"/*",
                b"!/*",
                b"*/",
                b"!*/",
                b"/",
                b"!",
                b"\\",
                b"**/",
                b"/**",
                b"[",
                b"[]",
                b"[!]",
                b"\\#h",
                b"\\!b",
            ]
        )
    return text


def _mangle(rng: random.Random, word: bytes) -> bytes:
    """A name turned into a glob some of the time: ``*``, ``?``, classes, escapes."""
    if not word or rng.random() < 0.45:
        return _escape_literal(word)
    out = bytearray()
    i = 0
    while i < len(word):
        b = word[i : i + 1]
        roll = rng.random()
        if roll < 0.12:
            out += b"?"
        elif roll < 0.2:
            out += b"*"
            i += rng.randint(0, 2)
        elif roll < 0.28:
            out += _char_class(rng, b)
        elif roll < 0.31:
            out += b"\\" + b
        else:
            out += _escape_literal(b)
        i += 1
    return bytes(out)


def _escape_literal(word: bytes) -> bytes:
    out = bytearray()
    for byte in word:
        if byte in b"*?[\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)


def _char_class(rng: random.Random, b: bytes) -> bytes:
    choice = rng.random()
    if choice < 0.25:
        return b"[" + b + b"xyz]"
    if choice < 0.4:
        return b"[!" + b + b"]"
    if choice < 0.5:
        return b"[^a-c]"
    if choice < 0.6:
        return b"[a-z]"
    if choice < 0.7:
        return b"[[:alpha:]]"
    if choice < 0.75:
        return b"[[:digit:][:space:]]"
    if choice < 0.8:
        return b"[\x80-\xff]"
    if choice < 0.85:
        return b"[]" + b + b"]"
    if choice < 0.9:
        return b"[\\" + b + b"-]"
    return b"[" + b  # unterminated: git matches nothing


def materialize(root: Path, case: Case, rules_name: str = ".gitignore") -> None:
    """Create the tree of ``case`` under ``root`` (which must not exist)."""
    base = os.fsencode(root)
    os.makedirs(base)
    for rel, kind in case.files.items():
        path = os.path.join(base, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if kind == "l":
            os.symlink(b"target-of-" + os.path.basename(rel), path)
        else:
            with open(path, "wb") as fh:
                fh.write(rel)
    for rel in case.link_dirs:
        path = os.path.join(base, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(b".", path)
    for d, raw in case.rules.items():
        directory = os.path.join(base, d) if d else base
        os.makedirs(directory, exist_ok=True)
        target = os.path.join(directory, os.fsencode(rules_name))
        if d in case.linked_rules:
            # The rules live in a file beside it; git >= 2.32 does not read them.
            with open(os.path.join(directory, b"real-rules"), "wb") as fh:
                fh.write(raw)
            os.symlink(b"real-rules", target)
        else:
            with open(target, "wb") as fh:
                fh.write(raw)


def reset(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
