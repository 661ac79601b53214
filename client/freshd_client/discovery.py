"""Find the packages under a root: directories holding a project file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from freshd_client.fileset import VENV_MARKER, pruned_name
from freshd_client.project import (
    Project,
    is_package_dir,
    project_or_none,
    workspace_member_dirs,
)


@dataclass(frozen=True, slots=True)
class Package:
    """A package found under a root."""

    path: str  # canonical absolute path
    name: str | None
    root: str
    workspace: str | None = None  # the uv workspace root this package is a member of
    project: Project | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class Discovery:
    """The packages under one root, and directories that could not be listed."""

    root: str
    packages: list[Package] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def discover(
    root: str,
    *,
    within: str | None = None,
    inside_packages: bool = True,
    read: bool = True,
) -> Discovery:
    """Walk ``root`` (canonical, a directory) and return every package below it.

    Never follows symlinks; skips VCS directories, virtual environments and tool
    caches. A package nested in another is its own package. ``within`` names the
    root the packages belong to when ``root`` is a directory inside it. Without
    ``inside_packages``, the walk stops at each package it finds: the indexer learns
    of the packages inside one from that package's own walk (``found_inside``).

    Without ``read`` (and ``inside_packages``), the project files are not read: the
    packages come without a name, a project or a workspace, for the caller to read with
    ``project.project_or_none`` (the crawl does once its workers are busy; ~60 µs a package).
    """
    if not read and inside_packages:
        raise ValueError("discover: read=False needs inside_packages=False")
    found = Discovery(within or root)
    projects = _search(root, root, found.problems, inside_packages=inside_packages, read=read)
    members = workspace_members(projects)
    for path in sorted(projects):
        project = projects[path]
        found.packages.append(
            Package(path, project.name if project else None, found.root, members.get(path), project)
        )
    return found


def found_inside(
    package: str, walked: tuple[list[str], list[str]] | None, problems: list[str]
) -> dict[str, Project | None]:
    """The packages that discovery finds inside ``package`` (a package it found), short
    of those inside them: from what the package's file-set walk saw (``walked``: the
    relative directories of the packages nested in it, and of the soft-excluded ones it
    did not enter), else (None: its walk did not finish) by walking it again, all of it.
    ``problems`` receives the directories that could not be listed."""
    if walked is None:
        projects = _search(package, package, problems, inside_packages=True)
        projects.pop(package, None)
        return projects
    nested, hidden = walked
    found: dict[str, Project | None] = {}
    for rel in nested:
        if _entered(rel):
            path = os.path.join(package, rel)
            found[path] = project_or_none(path)
    for rel in hidden:
        if _entered(rel):
            top = os.path.join(package, rel)
            found.update(_search(top, package, problems, inside_packages=False))
    return found


def _entered(rel: str) -> bool:
    """Whether discovery walks down this relative path (no part of it is pruned)."""
    return not any(pruned_name(part) for part in rel.split("/"))


def never_entered(directory: str, root: str) -> bool:
    """Whether discovery, walking ``root``, never enters ``directory`` (below it, or it):
    a part of the way is a pruned name (``fileset.pruned_name``) or a virtual environment
    (a directory holding ``pyvenv.cfg``), as ``discover`` decides while it walks."""
    if directory == root:
        return False
    if not _entered(directory[len(root) + 1 :]):
        return True
    current = root
    for part in directory[len(root) + 1 :].split("/"):
        current = os.path.join(current, part)
        if os.path.exists(os.path.join(current, VENV_MARKER)):
            return True
    return False


def _search(
    top: str,
    root: str,
    problems: list[str],
    *,
    inside_packages: bool,
    read: bool = True,
) -> dict[str, Project | None]:
    """The packages at and below directory ``top`` with their project files (None when
    not ``read``); ``root`` (where discovery started) is a package even if it holds a
    virtual environment."""
    projects: dict[str, Project | None] = {}
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as exc:
            problems.append(f"cannot list {directory}: {exc.strerror or exc}")
            continue
        names = {e.name for e in entries}
        if VENV_MARKER in names and directory != root:
            continue
        if is_package_dir(names):
            projects[directory] = project_or_none(directory) if read else None
            if not inside_packages:
                continue
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if not is_dir:
                continue
            if not pruned_name(entry.name):
                stack.append(entry.path)
    return projects


def workspace_members(projects: dict[str, Project | None]) -> dict[str, str]:
    """Map each workspace member's path to its workspace root (``[tool.uv.workspace]``)."""
    members: dict[str, str] = {}
    # In path order, whatever order the packages were found in: where two workspaces
    # claim a package, the deeper one wins.
    for ws_root, project in sorted(projects.items()):
        if project is None or project.workspace_members is None:
            continue
        for match in workspace_member_dirs(ws_root, project):
            real = os.path.realpath(match)
            if real in projects:
                members[real] = ws_root
    return members
