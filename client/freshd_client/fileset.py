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
import stat

from freshd_client.errors import UnreadableError
from freshd_client.project import Project, is_package_dir
from freshd_client.records import COOKIE_PREFIX
from freshd_client.smallfile import read_small

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Protocol

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


class WalkedFile:
    """A regular file or symlink in the file set, with the lstat taken during the walk."""

    __slots__ = ("rel", "st")

    def __init__(self, rel: str, st: os.stat_result) -> None:
        self.rel = rel  # relative POSIX path; non-UTF-8 names carry surrogate escapes
        self.st = st


class Walk:
    """The outcome of walking a package directory."""

    __slots__ = ("errors", "files", "nested", "skipped")

    def __init__(self) -> None:
        self.files: list[WalkedFile] = []
        self.skipped: list[str] = []  # "rel (fifo)" etc., never opened
        self.errors: list[UnreadableError] = []
        self.nested: list[str] = []  # relative dirs of nested packages


def _spec(lines: list[str] | tuple[str, ...]) -> pathspec.GitIgnoreSpec | None:
    if not lines:
        return None
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


class Matcher:
    """Decides soft exclusion of paths relative to one package directory."""

    def __init__(self, root: str, project: Project) -> None:
        self.root = root
        self.include = _spec(project.include)
        self.exclude = _spec(project.exclude)
        self._gitignores: dict[str, pathspec.GitIgnoreSpec | None] = {}
        # Per directory: the .gitignore specs that apply inside it, deepest first.
        self._chains: dict[str, tuple[tuple[str, pathspec.GitIgnoreSpec], ...]] = {}

    def load_gitignore(self, dir_rel: str) -> None:
        """Read ``dir_rel/.gitignore`` (called by the walk when the listing shows one)."""
        path = os.path.join(self.root, dir_rel, ".gitignore")
        try:
            raw = read_small(path)
        except OSError as exc:
            self._gitignores[dir_rel] = None
            raise UnreadableError(path, exc.strerror or str(exc)) from exc
        lines = raw.decode("utf-8", "surrogateescape").splitlines() if raw is not None else []
        self._gitignores[dir_rel] = _spec(lines)

    def included(self, rel: str, is_dir: bool) -> bool:
        """Whether ``[tool.freshd] include`` names this path."""
        return self.include is not None and self.include.match_file(rel + "/" if is_dir else rel)

    def soft_excluded(self, rel: str, is_dir: bool) -> bool:
        """Whether defaults, .gitignore files or ``[tool.freshd] exclude`` drop this path."""
        name = rel.rpartition("/")[2]
        if is_dir:
            if name in CACHE_DIRS or name.endswith(".egg-info"):
                return True
            if rel in TOP_BUILD_DIRS:
                return True
        elif name.endswith(BYTECODE_SUFFIXES):
            return True
        probe = rel + "/" if is_dir else rel
        if self.exclude is not None and self.exclude.match_file(probe):
            return True
        chain = self._chain(rel.rpartition("/")[0])
        if len(chain) == 1:  # the common case; match_file skips building a CheckResult
            base, spec = chain[0]
            return spec.match_file(probe[len(base) + 1 :] if base else probe)
        # The deepest .gitignore with a matching pattern decides (git's precedence).
        for base, spec in chain:
            result = spec.check_file(probe[len(base) + 1 :] if base else probe)
            if result.include is not None:
                return bool(result.include)
        return False

    def _chain(self, dir_rel: str) -> tuple[tuple[str, pathspec.GitIgnoreSpec], ...]:
        chain = self._chains.get(dir_rel)
        if chain is None:
            parent = self._chain(dir_rel.rpartition("/")[0]) if dir_rel else ()
            spec = self._gitignores.get(dir_rel)
            chain = ((dir_rel, spec), *parent) if spec is not None else parent
            self._chains[dir_rel] = chain
        return chain


def walk(
    root: str,
    project: Project,
    known: Mapping[str, Known] | None = None,
    dirs: list[tuple[str, os.stat_result]] | None = None,
) -> Walk:
    """Walk the package at ``root`` and return its file set (never follows symlinks).

    ``known`` holds the members of the previous file set: where the files that
    define the rules (``pyproject.toml`` and the ``.gitignore`` files above a
    directory) are unchanged since then, a known member is kept without being
    matched against the rules again. ``dirs`` (when given) receives each directory
    listed, with its lstat taken *before* the listing: a change made after the stat
    shows as a different stat later, never as a listing newer than its stat.
    """
    matcher = Matcher(root, project)
    result = Walk()
    files = result.files
    soft_excluded, included = matcher.soft_excluded, matcher.included
    known = known or {}
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
            if name in VCS_NAMES or name.startswith(COOKIE_PREFIX):
                continue
            rel = prefix + name
            try:
                if entry.is_dir(follow_symlinks=False):
                    if excluded_frame or soft_excluded(rel, True):
                        if matcher.include is not None:  # an include may re-admit something below
                            stack.append((rel, True, False))
                    else:
                        stack.append((rel, False, stable))
                    continue
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished since the listing: not part of the tree any more
            except OSError as exc:
                result.errors.append(UnreadableError(entry.path, exc.strerror or str(exc)))
                continue
            mode = st.st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
                result.skipped.append(f"{rel} ({_special_kind(mode)})")
            elif excluded_frame:
                if included(rel, False):
                    files.append(WalkedFile(rel, st))
            elif (stable and rel in known) or not soft_excluded(rel, False) or included(rel, False):
                files.append(WalkedFile(rel, st))
    return result


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
        return record.reusable_for(entry.stat(follow_symlinks=False))
    except OSError:
        return False


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"
