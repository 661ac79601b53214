"""The local dependency graph of a checkout, read from its project files alone.

The local packages are a uv workspace's root and members (``[tool.uv.workspace]``), or,
for a checkout that is not a workspace, every package below its root; either way with
the packages their ``[tool.uv.sources]`` path entries lead to. A package depends on a
local package when one of its requirements (``[project].dependencies``, optional
dependencies, ``[dependency-groups]``, ``[tool.uv] dev-dependencies``) names it by
normalised name, or names a path or workspace source. Everything else is external and
pinned by the lock (``lock.py``).

Paths in a graph are relative to its root (``/``-separated): nothing in it depends on
where the checkout lives.
"""

from __future__ import annotations

import os
import re

from freshd_client.discovery import discover
from freshd_client.errors import (
    DependencyCycleError,
    FreshdError,
    GraphError,
    MissingDependencyError,
    ProjectFileError,
)
from freshd_client.project import (
    is_package_dir,
    normalize_name,
    read_project,
    workspace_member_dirs,
)
from freshd_client.uvkeys import LOCK, _read, _toml  # the project's one TOML reader

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_REQUIREMENT_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
"""The distribution name at the start of a PEP 508 requirement."""


class Node:
    """One local package: its normalised name, where it is, and its local dependencies."""

    __slots__ = ("deps", "name", "path", "rel")

    def __init__(self, name: str, path: str, rel: str, deps: tuple[str, ...]) -> None:
        self.name = name
        self.path = path  # canonical absolute path
        self.rel = rel  # relative to the graph's root, "/"-separated ("." for the root)
        self.deps = deps  # names of the local packages it depends on, sorted

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.rel!r}, deps={self.deps!r})"


class Graph:
    """The local packages of a checkout, in dependency order (dependencies first)."""

    def __init__(self, root: str, nodes: dict[str, Node]) -> None:
        self.root = root
        self.nodes = nodes
        self.order = _ordered(nodes)

    def dependents(self, name: str) -> set[str]:
        """Every package that depends on ``name``, directly or not."""
        found: set[str] = set()
        for other in self.order:  # dependencies come first: one pass suffices
            if any(d == name or d in found for d in self.nodes[other].deps):
                found.add(other)
        return found


def find_root(start: str) -> str:
    """The checkout's root for ``start``: the nearest directory upwards holding
    ``uv.lock`` or a ``[tool.uv.workspace]``, else ``start`` itself."""
    start = os.path.realpath(start)
    here = start
    while True:
        if os.path.isfile(os.path.join(here, LOCK)) or _is_workspace(here):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return start
        here = parent


def _is_workspace(directory: str) -> bool:
    if not os.path.isfile(os.path.join(directory, "pyproject.toml")):
        return False
    try:
        return read_project(directory).workspace_members is not None
    except ProjectFileError:
        return False


def load(root: str) -> Graph:
    """The graph of the checkout at ``root`` (a directory).

    Raises GraphError for unreadable project files or two packages of one name,
    MissingDependencyError for a source naming no package, DependencyCycleError.
    """
    root = os.path.realpath(root)
    if not os.path.isdir(root):
        raise GraphError(f"{root}: not a directory")
    pending = _packages_of(root)
    tables: dict[str, dict[str, Any]] = {}  # path -> pyproject data
    names: dict[str, str] = {}  # name -> path
    while pending:
        path = pending.pop()
        if path in tables:
            continue
        data = _pyproject(path)
        tables[path] = data
        name = _name_of(path, data)
        if names.get(name, path) != path:
            raise GraphError(f"two local packages are named {name!r}: {names[name]} and {path}")
        names[name] = path
        for source in _path_sources(data).values():
            target = os.path.realpath(os.path.join(path, source))
            if not _is_package(target):
                raise MissingDependencyError(
                    f"{_shown(root, path)}: the path source {source!r} is not a package "
                    f"({_shown(root, target)})"
                )
            pending.append(target)
    by_path = {path: name for name, path in names.items()}
    nodes: dict[str, Node] = {}
    for path, data in tables.items():
        name = by_path[path]
        deps: set[str] = set()
        sources = _path_sources(data)
        for requirement in _requirements(data, path):
            dep = normalize_name(requirement)
            if dep in sources:
                deps.add(by_path[os.path.realpath(os.path.join(path, sources[dep]))])
            elif dep in names:
                deps.add(dep)
            elif dep in _workspace_sources(data):
                raise MissingDependencyError(
                    f"{_shown(root, path)}: {dep!r} is a workspace source, but no local "
                    "package has that name"
                )
        deps.discard(name)  # "pkg[extra]" among its own optional dependencies
        nodes[name] = Node(name, path, _shown(root, path), tuple(sorted(deps)))
    return Graph(root, nodes)


def _packages_of(root: str) -> list[str]:
    """The packages a checkout declares: a workspace's root and members, else every
    package below the root, as the daemon's discovery finds them."""
    try:
        project = read_project(root) if _is_package(root) else None
    except ProjectFileError as exc:
        raise GraphError(str(exc)) from None
    if project is not None and project.workspace_members is not None:
        found = [root] if _has_project_table(root) else []
        members = (os.path.realpath(m) for m in workspace_member_dirs(root, project))
        return found + [m for m in members if _is_package(m)]
    walked = discover(root)
    if walked.problems:
        raise GraphError(walked.problems[0])
    return [p.path for p in walked.packages if p.path != root or _has_project_table(root)]


def _is_package(path: str) -> bool:
    try:
        return is_package_dir(set(os.listdir(path)))
    except OSError:
        return False


def _has_project_table(path: str) -> bool:
    """Whether the package at ``path`` is a project (a virtual workspace root is not)."""
    data = _pyproject(path)
    return bool(data.get("project")) or not os.path.isfile(os.path.join(path, "pyproject.toml"))


def _pyproject(path: str) -> dict[str, Any]:
    where = os.path.join(path, "pyproject.toml")
    try:
        raw = _read(where)
        return {} if raw is None else _toml(where, raw)
    except FreshdError as exc:
        raise GraphError(str(exc)) from None


def _name_of(path: str, data: dict[str, Any]) -> str:
    project = data.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    if not isinstance(name, str) or not name:
        try:
            name = read_project(path).name  # setup.cfg's name
        except ProjectFileError as exc:
            raise GraphError(str(exc)) from None
    return normalize_name(name or os.path.basename(path))


def _requirements(data: dict[str, Any], path: str) -> list[str]:
    """The distribution names a package requires, in any of its dependency lists."""
    project = data.get("project")
    project = project if isinstance(project, dict) else {}
    lists: list[object] = [project.get("dependencies", [])]
    optional = project.get("optional-dependencies", {})
    lists += optional.values() if isinstance(optional, dict) else []
    groups = data.get("dependency-groups", {})
    lists += groups.values() if isinstance(groups, dict) else []
    lists.append(_uv(data).get("dev-dependencies", []))
    names: list[str] = []
    for entries in lists:
        if not isinstance(entries, list):
            raise GraphError(f"{path}/pyproject.toml: a dependency list is not a list")
        for entry in entries:
            if isinstance(entry, str):  # {include-group = ...} tables name no distribution
                match = _REQUIREMENT_NAME.match(entry)
                if match is None:
                    raise GraphError(f"{path}/pyproject.toml: not a requirement: {entry!r}")
                names.append(match.group(1))
    return names


def _uv(data: dict[str, Any]) -> dict[str, Any]:
    tool = data.get("tool")
    uv = tool.get("uv") if isinstance(tool, dict) else None
    return uv if isinstance(uv, dict) else {}


def _sources(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``[tool.uv.sources]`` by normalised name, each as a list of tables (uv allows one
    table or a list of them, told apart by markers)."""
    sources = _uv(data).get("sources")
    found: dict[str, list[dict[str, Any]]] = {}
    for name, value in (sources or {}).items() if isinstance(sources, dict) else []:
        tables = value if isinstance(value, list) else [value]
        found[normalize_name(name)] = [t for t in tables if isinstance(t, dict)]
    return found


def _path_sources(data: dict[str, Any]) -> dict[str, str]:
    """The path sources (name -> relative path) of a package."""
    return {
        name: table["path"]
        for name, tables in _sources(data).items()
        for table in tables
        if isinstance(table.get("path"), str)
    }


def _workspace_sources(data: dict[str, Any]) -> set[str]:
    return {
        name
        for name, tables in _sources(data).items()
        if any(t.get("workspace") is True for t in tables)
    }


def _shown(root: str, path: str) -> str:
    """``path`` relative to ``root``, ``/``-separated."""
    return os.path.relpath(path, root).replace(os.sep, "/")


def _ordered(nodes: dict[str, Node]) -> list[str]:
    """The names in dependency order (dependencies first, ties by name);
    DependencyCycleError naming a cycle."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*path[path.index(name) :], name]
            raise DependencyCycleError("local packages depend on each other: " + " -> ".join(cycle))
        state[name] = 1
        for dep in nodes[name].deps:
            visit(dep, [*path, name])
        state[name] = 2
        order.append(name)

    for name in sorted(nodes):
        visit(name, [])
    return order
