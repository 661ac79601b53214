"""Which files belong to a package: the file-set rules of DESIGN.md.

Hard exclusions can never be re-included: VCS directories, virtual environments
(a directory holding ``pyvenv.cfg``), nested packages, freshd's cookie files,
and FIFOs/sockets/devices (never opened; reported as skipped). Soft exclusions
(``__pycache__``, ``*.pyc``, ``build/`` and ``dist/`` at the package top,
``*.egg-info``, tool caches, ``.gitignore`` matches, ``[tool.freshd] exclude``)
are overridden by ``[tool.freshd] include``.

Only ``.gitignore`` files inside the package count, and only regular ones (a
symlinked ``.gitignore`` is not followed, as in git >= 2.32), so a package's file set
is a function of the package directory alone, wherever it is copied. They are matched
exactly as git matches them (``freshd_client.content.ignore``), and the walk prunes a directory
exactly when git would: never below an excluded directory.

This module is the one definition of "part of the package's file set": the scanner,
the seals and the stat caches all take the file set from ``walk``.
"""

from __future__ import annotations

import functools
import os
import stat
from collections.abc import Iterable, Mapping
from typing import NamedTuple, Protocol

from freshd_client.content.ignore import RuleList, split_lines
from freshd_client.content.project import Project, is_package_dir
from freshd_client.content.smallfile import read_small
from freshd_client.errors import UnreadableError
from freshd_client.spec.identity import is_link
from freshd_client.spec.records import COOKIE_PREFIX


class Known(Protocol):
    """A stored record of a file-set member (``schema.FileRecord``)."""

    def reusable_for(self, st: os.stat_result) -> bool: ...


VCS_NAMES = frozenset({".git", ".hg", ".svn", ".bzr", "_darcs", ".jj", ".pijul"})
CACHE_DIRS = frozenset(
    {"__pycache__", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules"}
)
TOP_BUILD_DIRS = frozenset({"build", "dist"})
BYTECODE_SUFFIXES = (".pyc", ".pyo")
VENV_MARKER = "pyvenv.cfg"


def defines_rules(rel: str) -> bool:
    """Whether the file at the relative path ``rel`` makes the file-set rules: the
    package's ``pyproject.toml`` (``[tool.freshd]``) or a ``.gitignore`` at any depth.
    A change of one may add or drop other files, so nothing judged by the old rules
    stands (``walk``'s ``known``, ``scan.rescan_files``)."""
    return rel == "pyproject.toml" or rel.rpartition("/")[2] == ".gitignore"


def pruned_name(name: str) -> bool:
    """Whether a directory of this name is outside every file set by its name alone,
    wherever it is: a VCS directory or a tool cache (``__pycache__``, ``*.egg-info`` ...).
    Discovery never enters one, and the daemon looks away from events below one."""
    return name in VCS_NAMES or _tool_cache(name)


def _tool_cache(name: str) -> bool:
    return name in CACHE_DIRS or name.endswith(".egg-info")


def excluded_by_default(rel: str, is_dir: bool) -> bool:
    """Whether the default soft exclusions drop the file or directory at the relative
    path ``rel``: tool caches, ``*.egg-info`` and ``build/``/``dist/`` at the top as
    directories, bytecode as files. The one definition: the walk uses it, and so does
    the daemon's event filter (a *file* named ``build`` is in the file set)."""
    name = rel.rpartition("/")[2]
    if is_dir:
        return _tool_cache(name) or rel in TOP_BUILD_DIRS
    return name.endswith(BYTECODE_SUFFIXES)


def outside_file_set(rel: str, is_dir: bool) -> bool:
    """Whether the path ``rel`` (relative to a package, a directory when ``is_dir``) is
    outside its file set whatever its ``.gitignore`` files say: it, or a directory
    above it, is a VCS name (never walked) or excluded by default (``excluded_by_default``,
    re-admitted only by ``[tool.freshd] include``). The daemon drops events for such
    paths: they provably cannot change a digest that has no include rules."""
    parts = rel.split("/")
    last = len(parts) - 1
    for i, name in enumerate(parts):
        as_dir = is_dir or i < last
        if name in VCS_NAMES or excluded_by_default("/".join(parts[: i + 1]), as_dir):
            return True
    return False


class WalkedFile(NamedTuple):
    """A regular file or symlink in the file set, with the lstat the walk took."""

    rel: str  # relative POSIX path; non-UTF-8 names carry surrogate escapes
    st: os.stat_result | None  # None: listed as a regular file, not stat'ed


class Walk:
    """The outcome of walking a package directory."""

    __slots__ = ("errors", "files", "gitignores", "hidden", "nested", "skipped")

    def __init__(self) -> None:
        self.files: list[WalkedFile] = []
        self.skipped: list[str] = []  # "rel (fifo)" etc., never opened
        self.errors: list[UnreadableError] = []
        self.nested: list[str] = []  # relative dirs of nested packages
        self.hidden: list[str] = []  # relative dirs not walked: soft-excluded, cookie names
        self.gitignores: list[str] = []  # relative paths of the .gitignore files read


def _rules(lines: tuple[bytes, ...]) -> RuleList | None:
    """The compiled rules of these pattern lines (None: no pattern)."""
    return _compiled(lines) if lines else None


# Cached by their lines: the packages of a monorepo often share a .gitignore, and
# compiling one costs more than walking a small package (a RuleList is never modified).
@functools.lru_cache(maxsize=256)
def _compiled(lines: tuple[bytes, ...]) -> RuleList:
    return RuleList(lines)


def project_rules(patterns: tuple[str, ...]) -> RuleList | None:
    """``[tool.freshd] include`` or ``exclude`` as rules: its entries are the lines of a
    ``.gitignore`` in the package directory (docs/digest-spec.md)."""
    if not patterns:
        return None
    raw = "\n".join(patterns).encode("utf-8", "surrogateescape")
    return _rules(tuple(split_lines(raw)))


class Matcher:
    """Decides soft exclusion of paths relative to one package directory.

    Each method judges a path by the rules that apply to the path itself; that nothing
    above it is excluded is the walk's part (it never descends into an excluded
    directory, as git never does).
    """

    def __init__(self, root: str, project: Project) -> None:
        self.root = root
        self.include = project_rules(project.include)
        self.exclude = project_rules(project.exclude)
        # Per directory: its .gitignore's rules (None: none, or no pattern in it).
        self._gitignores: dict[str, RuleList | None] = {}
        # Per directory: the .gitignore rules that apply inside it, deepest first, each
        # with the length of its directory's "dir/" prefix.
        self._chains: dict[str, tuple[tuple[int, RuleList], ...]] = {}

    def load_gitignore(self, dir_rel: str) -> bool:
        """Read ``dir_rel/.gitignore`` (called by the walk when the listing shows one);
        False when it is not a regular file: a symlink is never followed (git >= 2.32
        does not read one either), so no rule comes from outside the package."""
        path = os.path.join(self.root, dir_rel, ".gitignore")
        try:
            raw = read_small(path, follow=False)
        except OSError as exc:
            self._gitignores[dir_rel] = None
            raise UnreadableError(path, exc.strerror or str(exc)) from exc
        self._gitignores[dir_rel] = _rules(tuple(split_lines(raw))) if raw else None
        return raw is not None

    def included(self, rel: str, is_dir: bool) -> bool:
        """Whether the last ``[tool.freshd] include`` pattern matching this path is not a
        negation (the walk re-admits what is below an included directory)."""
        return self.include is not None and self.include.decide(_raw(rel), is_dir) is True

    def soft_excluded(self, rel: str, is_dir: bool) -> bool:
        """Whether defaults, .gitignore files or ``[tool.freshd] exclude`` drop this path."""
        if excluded_by_default(rel, is_dir):
            return True
        dir_rel = rel.rpartition("/")[0]
        raw = _raw(rel)
        if self.exclude is not None and self.exclude.decide(raw, is_dir):
            return True
        # The deepest .gitignore with a matching pattern decides (git's precedence).
        for skip, rules in self._chain(dir_rel):
            decided = rules.decide(raw[skip:] if skip else raw, is_dir)
            if decided is not None:
                return decided
        return False

    def _chain(self, dir_rel: str) -> tuple[tuple[int, RuleList], ...]:
        chain = self._chains.get(dir_rel)
        if chain is None:
            parent = self._chain(dir_rel.rpartition("/")[0]) if dir_rel else ()
            rules = self._gitignores.get(dir_rel)
            skip = len(_raw(dir_rel)) + 1 if dir_rel else 0
            chain = ((skip, rules), *parent) if rules is not None else parent
            self._chains[dir_rel] = chain
        return chain


def _raw(rel: str) -> bytes:
    """The file-system bytes of a relative path (the walk's names carry surrogate escapes)."""
    return rel.encode("utf-8", "surrogateescape")


def walk(
    root: str,
    project: Project,
    known: Mapping[str, Known] | None = None,
    dirs: list[tuple[str, os.stat_result]] | None = None,
    *,
    lstat_new: bool = True,
) -> Walk:
    """Walk the package at ``root`` and return its file set (never follows symlinks).

    ``known`` holds the members of the previous file set: where the files that
    define the rules (``pyproject.toml`` and the ``.gitignore`` files above a
    directory) are unchanged since then, a known member is kept without being
    matched against the rules again. ``dirs`` (when given) receives each directory
    listed, with its lstat taken *before* the listing: a change made after the stat
    shows as a different stat later, never as a listing newer than its stat.

    Every known member and symlink gets its lstat; a regular file that is not known
    gets none when ``lstat_new`` is false (the listing's type says what it is, and a
    hasher's fstat of the opened file says the rest).
    """
    matcher = Matcher(root, project)
    result = Walk()
    files = result.files
    soft_excluded, included = matcher.soft_excluded, matcher.included
    has_include = matcher.include is not None
    known = known or {}
    known_dirs: set[str] | None = None  # the directories above known members, when needed
    # Each frame: (relative dir, its state, whether the rules that apply inside it are
    # unchanged since ``known`` was made). The state: _KEPT (walked as usual), _EXCLUDED
    # (soft-excluded, walked only for [tool.freshd] include) or _INCLUDED (include names
    # it: everything below that is not hard-excluded is in the set).
    stack: list[tuple[str, int, bool]] = [("", _KEPT, bool(known))]
    while stack:
        dir_rel, state, stable = stack.pop()
        abs_dir = os.path.join(root, dir_rel) if dir_rel else root
        try:
            if dirs is not None:
                dirs.append((dir_rel, os.lstat(abs_dir)))
            with os.scandir(abs_dir) as it:
                entries = list(it)
        except OSError as exc:
            result.errors.append(UnreadableError(abs_dir, exc.strerror or str(exc)))
            continue
        names = {e.name for e in entries}
        if dir_rel:
            if VENV_MARKER in names:
                continue
            if is_package_dir(names):
                result.nested.append(dir_rel)
                continue
        if ".gitignore" in names and state == _KEPT:
            # Only a regular file is read: git >= 2.32 does not follow a symlinked one, and
            # a FIFO is never opened. Below an excluded directory git reads none either.
            entry = next(e for e in entries if e.name == ".gitignore")
            try:
                if entry.is_file(follow_symlinks=False) and matcher.load_gitignore(dir_rel):
                    result.gitignores.append(f"{dir_rel}/.gitignore" if dir_rel else ".gitignore")
            except UnreadableError as exc:
                result.errors.append(exc)
            except OSError:
                pass  # vanished since the listing: no rules
        prefix = dir_rel + "/" if dir_rel else ""
        if stable:
            stable = _rules_unchanged(known, prefix + ".gitignore", names, entries)
            if not dir_rel:
                stable = stable and _rules_unchanged(known, "pyproject.toml", names, entries)
        for entry in entries:
            name = entry.name
            if name in VCS_NAMES:
                continue
            rel = prefix + name
            try:
                if name.startswith(COOKIE_PREFIX):
                    if entry.is_dir(follow_symlinks=False):
                        result.hidden.append(rel)
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if state == _INCLUDED:
                        stack.append((rel, _INCLUDED, False))
                        continue
                    if stable and state == _KEPT and not has_include:
                        # Unchanged rules kept it before (no include can have re-admitted
                        # what is below it): no need to match it again.
                        if known_dirs is None:
                            known_dirs = _ancestors(known)
                        if rel in known_dirs:
                            stack.append((rel, _KEPT, True))
                            continue
                    if has_include and included(rel, True):
                        stack.append((rel, _INCLUDED, False))
                    elif state == _EXCLUDED or soft_excluded(rel, True):
                        if has_include:  # an include may re-admit something below
                            stack.append((rel, _EXCLUDED, False))
                        else:
                            result.hidden.append(rel)
                    else:
                        stack.append((rel, _KEPT, stable))
                    continue
                member = rel in known
                if member or lstat_new or not entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    mode = st.st_mode
                    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                        result.skipped.append(f"{rel} ({_special_kind(mode)})")
                        continue
                else:
                    st = None
            except FileNotFoundError:
                continue  # vanished since the listing: not part of the tree any more
            except OSError as exc:
                result.errors.append(UnreadableError(entry.path, exc.strerror or str(exc)))
                continue
            if state == _INCLUDED:
                files.append(_walked(WalkedFile, (rel, st)))
            elif state == _EXCLUDED:
                if included(rel, False):
                    files.append(_walked(WalkedFile, (rel, st)))
            elif (stable and member) or not soft_excluded(rel, False) or included(rel, False):
                files.append(_walked(WalkedFile, (rel, st)))
    return result


_KEPT, _EXCLUDED, _INCLUDED = 0, 1, 2


_walked = tuple.__new__  # builds a WalkedFile without its keyword-parsing __new__


def _ancestors(paths: Iterable[str]) -> set[str]:
    """Every directory above one of the relative ``paths``."""
    dirs: set[str] = set()
    for rel in paths:
        head = rel.rpartition("/")[0]
        while head and head not in dirs:
            dirs.add(head)
            head = head.rpartition("/")[0]
    return dirs


def _rules_unchanged(
    known: Mapping[str, Known], rel: str, names: set[str], entries: list[os.DirEntry[str]]
) -> bool:
    """Whether a rule file is as it was when ``known`` was made (both absent counts)."""
    name = rel.rpartition("/")[2]
    record = known.get(rel)
    if name not in names:
        return record is None
    if record is None:
        return False
    entry = next(e for e in entries if e.name == name)
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    # A rule file read through a link: the link's own identity says nothing of its
    # target's edits (churn seed 639247675: a package kept a file its rules now exclude).
    return not is_link(st) and record.reusable_for(st)


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
