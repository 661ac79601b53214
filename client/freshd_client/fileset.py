"""Which files belong to a package: the file-set rules of DESIGN.md.

Hard exclusions can never be re-included: VCS directories, virtual environments
(a directory holding ``pyvenv.cfg``), nested packages, freshd's cookie files,
and FIFOs/sockets/devices (never opened; reported as skipped). Soft exclusions
(``__pycache__``, ``*.pyc``, ``build/`` and ``dist/`` at the package top,
``*.egg-info``, tool caches, ``.gitignore`` matches, ``[tool.freshd] exclude``)
are overridden by ``[tool.freshd] include``.

Only ``.gitignore`` files inside the package count, so a package's file set is
a function of the package directory alone, wherever it is copied.
"""

from __future__ import annotations

import os
import re
import stat
from collections import namedtuple

from freshd_client.errors import UnreadableError
from freshd_client.project import Project, is_package_dir
from freshd_client.records import COOKIE_PREFIX
from freshd_client.smallfile import read_small

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import NamedTuple, Protocol

    import pathspec

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


def excluded_by_default(rel: str, is_dir: bool) -> bool:
    """Whether the default soft exclusions drop the file or directory at the relative
    path ``rel``: tool caches, ``*.egg-info`` and ``build/``/``dist/`` at the top as
    directories, bytecode as files. The one definition: the walk uses it, and so does
    the daemon's event filter (a *file* named ``build`` is in the file set)."""
    name = rel.rpartition("/")[2]
    if is_dir:
        return name in CACHE_DIRS or name.endswith(".egg-info") or rel in TOP_BUILD_DIRS
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


if TYPE_CHECKING:

    class WalkedFile(NamedTuple):
        """A regular file or symlink in the file set, with the lstat the walk took."""

        rel: str  # relative POSIX path; non-UTF-8 names carry surrogate escapes
        st: os.stat_result | None  # None: listed as a regular file, not stat'ed

else:  # the same named tuple, without loading typing
    WalkedFile = namedtuple("WalkedFile", ("rel", "st"))


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


def _spec(lines: list[str] | tuple[str, ...]) -> Rules | None:
    if not lines:
        return None
    key = tuple(lines)
    rules = _COMPILED.get(key)
    if rules is None:
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        rules = _COMPILED[key] = Rules(_compile(key))
    return rules


# Compiled rules by their lines: the packages of a monorepo often share a .gitignore, and
# compiling one costs more than walking a small package (Rules are never modified).
_COMPILED: dict[tuple[str, ...], Rules] = {}
_COMPILED_MAX = 256


def _compile(lines: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    import pathspec  # ~15 ms: loaded only for a package that has rules to match

    try:
        return pathspec.GitIgnoreSpec.from_lines(lines)
    except ValueError:
        # A line such as "!" or "\\" is no pattern: git ignores it, and so do we (it
        # used to stop the daemon's engine; issue 5, churn seed 200).
        return pathspec.GitIgnoreSpec.from_lines(line for line in lines if _valid(line))


def _valid(line: str) -> bool:
    import pathspec

    try:
        pathspec.GitIgnoreSpec.from_lines([line])
    except ValueError:
        return False
    return True


class Rules:
    """A list of gitignore-style patterns, matched by pathspec.

    Most paths match none of a package's patterns, and pathspec tries each pattern
    in turn: one regular expression joining all of them answers "no match" first
    (as often as not the whole answer). Paths are relative and normalized, as the
    walk builds them.
    """

    __slots__ = ("_any", "spec")

    def __init__(self, spec: pathspec.GitIgnoreSpec) -> None:
        self.spec = spec
        self._any = _union(spec)

    def match(self, path: str) -> bool:
        """Whether the patterns exclude ``path`` (``GitIgnoreSpec.match_file``)."""
        if self._any is not None and self._any.search(path) is None:
            return False
        return self.spec.match_file(path)

    def decide(self, path: str) -> bool | None:
        """Whether the last matching pattern excludes (True) or re-includes (False)
        ``path``; None when no pattern matches it (``GitIgnoreSpec.check_file``)."""
        if self._any is not None and self._any.search(path) is None:
            return None
        return self.spec.check_file(path).include


_DIR_MARK_GROUP = "(?P<ps_d>"  # pathspec's one named group: marks a directory match
_PLAIN_FLAGS = re.UNICODE  # what every str pattern compiles with


def _union(spec: pathspec.GitIgnoreSpec) -> re.Pattern[str] | None:
    """An expression that matches a path exactly when one of ``spec``'s patterns does
    (pathspec searches each pattern's expression); None when the patterns are not
    expressions it can safely join: pathspec alone then decides."""
    parts = []
    for pattern in spec.patterns:
        if pattern.include is None:
            continue  # a blank line or a comment: pathspec skips it too
        regex = getattr(pattern, "regex", None)
        if regex is None or not isinstance(regex.pattern, str) or regex.flags != _PLAIN_FLAGS:
            return None
        text = regex.pattern.replace(_DIR_MARK_GROUP, "(?:")
        # Joined, numbered groups shift: any back-reference (or other group name) stops it.
        if "(?P" in text or re.search(r"\\[1-9]", text):
            return None
        parts.append(f"(?:{text})")
    try:
        return re.compile("|".join(parts) or "(?!)")  # no pattern: nothing matches
    except re.error:
        return None


class Matcher:
    """Decides soft exclusion of paths relative to one package directory."""

    def __init__(self, root: str, project: Project) -> None:
        self.root = root
        self.include = _spec(project.include)
        self.exclude = _spec(project.exclude)
        # Per directory: its .gitignore's lines, read when listed, compiled when first
        # matched against (a walk that only meets known members never loads pathspec).
        self._gitignores: dict[str, list[str] | Rules | None] = {}
        # Per directory: the .gitignore specs that apply inside it, deepest first.
        self._chains: dict[str, tuple[tuple[str, Rules], ...]] = {}

    def load_gitignore(self, dir_rel: str) -> None:
        """Read ``dir_rel/.gitignore`` (called by the walk when the listing shows one)."""
        path = os.path.join(self.root, dir_rel, ".gitignore")
        try:
            raw = read_small(path)
        except OSError as exc:
            self._gitignores[dir_rel] = None
            raise UnreadableError(path, exc.strerror or str(exc)) from exc
        lines = raw.decode("utf-8", "surrogateescape").splitlines() if raw is not None else []
        self._gitignores[dir_rel] = lines or None

    def included(self, rel: str, is_dir: bool) -> bool:
        """Whether ``[tool.freshd] include`` names this path."""
        return self.include is not None and self.include.match(rel + "/" if is_dir else rel)

    def soft_excluded(self, rel: str, is_dir: bool) -> bool:
        """Whether defaults, .gitignore files or ``[tool.freshd] exclude`` drop this path."""
        if excluded_by_default(rel, is_dir):
            return True
        dir_rel = rel.rpartition("/")[0]
        probe = rel + "/" if is_dir else rel
        if self.exclude is not None and self.exclude.match(probe):
            return True
        chain = self._chain(dir_rel)
        if len(chain) == 1:  # the common case; match skips building a CheckResult
            base, rules = chain[0]
            return rules.match(probe[len(base) + 1 :] if base else probe)
        # The deepest .gitignore with a matching pattern decides (git's precedence).
        for base, rules in chain:
            decided = rules.decide(probe[len(base) + 1 :] if base else probe)
            if decided is not None:
                return decided
        return False

    def _chain(self, dir_rel: str) -> tuple[tuple[str, Rules], ...]:
        chain = self._chains.get(dir_rel)
        if chain is None:
            parent = self._chain(dir_rel.rpartition("/")[0]) if dir_rel else ()
            spec = self._gitignores.get(dir_rel)
            if isinstance(spec, list):
                spec = self._gitignores[dir_rel] = _spec(spec)
            chain = ((dir_rel, spec), *parent) if spec is not None else parent
            self._chains[dir_rel] = chain
        return chain


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
    known = known or {}
    known_dirs: set[str] | None = None  # the directories above known members, when needed
    # Each frame: (relative dir, whether it is soft-excluded and walked only for includes,
    # whether the rules that apply inside it are unchanged since ``known`` was made).
    stack: list[tuple[str, bool, bool]] = [("", False, bool(known))]
    while stack:
        dir_rel, excluded_frame, stable = stack.pop()
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
        if ".gitignore" in names:
            result.gitignores.append(f"{dir_rel}/.gitignore" if dir_rel else ".gitignore")
            try:
                matcher.load_gitignore(dir_rel)
            except UnreadableError as exc:
                result.errors.append(exc)
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
                    if stable and not excluded_frame and matcher.include is None:
                        # Unchanged rules kept it before (no include can have re-admitted
                        # what is below it): no need to match it again.
                        if known_dirs is None:
                            known_dirs = _ancestors(known)
                        if rel in known_dirs:
                            stack.append((rel, False, True))
                            continue
                    if excluded_frame or soft_excluded(rel, True):
                        if matcher.include is not None:  # an include may re-admit something below
                            stack.append((rel, True, False))
                        else:
                            result.hidden.append(rel)
                    else:
                        stack.append((rel, False, stable))
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
            if excluded_frame:
                if included(rel, False):
                    files.append(_walked(WalkedFile, (rel, st)))
            elif (stable and member) or not soft_excluded(rel, False) or included(rel, False):
                files.append(_walked(WalkedFile, (rel, st)))
    return result


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
    return not stat.S_ISLNK(st.st_mode) and record.reusable_for(st)


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
