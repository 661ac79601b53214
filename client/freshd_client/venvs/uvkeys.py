"""uv's own freshness check, made content-based: the ``FRESHD_DIGEST…`` cache keys.

uv decides whether an installed local package is fresh by comparing the cache info it
recorded at install time (``[tool.uv] cache-keys``) with the current one. A package
whose only cache key is ``{ env = "FRESHD_DIGEST_LIB" }`` is fresh for uv exactly when
that variable holds the value it held at the install. ``freshd run -- uv …`` sets it to
the package's content digest, so uv rebuilds what changed by content and nothing else,
while everything else (the lock, groups, extras, editable flags, its errors) stays
uv's own: freshd never installs anything itself on this path.

Which digest: ``meta`` (build inputs) when the package is, or is about to be,
installed editable, else ``tree``. The digest's text names its scope, so a value
computed for one mode never equals one recorded for the other: a wrong guess costs a
rebuild, never a missed one. A package whose digest cannot be computed gets a value
no install recorded, so uv rebuilds it (fail closed).
"""

from __future__ import annotations

import os

from freshd_client.errors import FreshdError
from freshd_client.spec.identity import is_link, lstat_identity, racy
from freshd_client.venvs import quick
from freshd_client.venvs.uvcache import INSTALL, DigestCache, lock_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from freshd_client.spec.digest import Scope

UV_NAMES = ("uv", "uv.exe")
LOCK = "uv.lock"


def is_uv(command: list[str]) -> bool:
    """Whether ``command`` runs uv itself (``uv run …``, ``uv sync …``)."""
    return bool(command) and os.path.basename(command[0]) in UV_NAMES


def made_by_uv(venv: str | None, env: dict[str, str]) -> bool:
    """Whether the project's venv (``venv``, else as ``project_venv`` finds it) was made
    by uv: ``pyvenv.cfg`` names uv's version."""
    path = project_venv(project_root([], env), venv, env)
    try:
        with open(os.path.join(path, "pyvenv.cfg"), encoding="utf-8") as f:
            return any(line.split("=")[0].strip() == "uv" for line in f)
    except OSError:
        return False


def _option(args: list[str], name: str) -> str | None:
    """The value of uv option ``name`` in ``args`` (``--name V`` or ``--name=V``)."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :]
    return None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def project_root(args: list[str], env: dict[str, str]) -> str:
    """The directory uv takes the project from: the nearest one upwards holding
    ``uv.lock`` (a workspace's root), else the nearest holding ``pyproject.toml``."""
    start = os.path.abspath(_option(args, "--directory") or ".")
    project = _option(args, "--project") or env.get("UV_PROJECT")
    if project:
        start = os.path.join(start, project)
    nearest = None
    here = start
    while True:
        if os.path.isfile(os.path.join(here, LOCK)):
            return here
        if nearest is None and os.path.isfile(os.path.join(here, "pyproject.toml")):
            nearest = here
        parent = os.path.dirname(here)
        if parent == here:
            return nearest or start
        here = parent


def project_venv(root: str, venv: str | None, env: dict[str, str]) -> str:
    """The venv uv syncs: ``venv`` when given, else ``$UV_PROJECT_ENVIRONMENT`` (relative
    to the project root), else ``ROOT/.venv``."""
    if venv is not None:
        from freshd_client.transport.locations import named

        return os.path.abspath(named(venv))
    return os.path.join(root, env.get("UV_PROJECT_ENVIRONMENT") or ".venv")


def local_packages(root: str, venv: str, cache: DigestCache) -> dict[str, bool]:
    """The local packages of the project (source directory → installed editable): those
    installed in ``venv`` as they are installed, and those the lock names as editable or
    directory sources (which uv is about to install) as the lock says."""
    from freshd_client.venvs.venv import local_installs

    found: dict[str, bool] = {}
    if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
        for install in local_installs(venv):
            found[os.path.normpath(install.source)] = install.editable
    lock = os.path.join(root, LOCK)
    locked = cache.lock_sources(lock)
    if locked is None:
        from freshd_client.content.project import parse_toml, read_file

        ident = lstat_identity(lock)  # before it is read
        raw = read_file(lock)
        if raw is not None:
            locked = _locked_sources(root, parse_toml(lock, raw))
            cache.keep_lock(lock, ident, locked, lock_digest(raw))
    if locked is None:  # no lock yet: what uv is about to lock, from the project files
        locked = [(root, True), *_declared_sources(root)]
    for source, editable in locked:
        found.setdefault(source, editable)
    return found


def _declared_sources(root: str) -> list[tuple[str, bool]]:
    """(directory, editable) of the workspace members and path sources that the project
    at ``root`` declares (``[tool.uv.workspace]``, ``[tool.uv.sources]``)."""
    from freshd_client.content.project import read_project, read_toml, workspace_member_dirs

    path = os.path.join(root, "pyproject.toml")
    data = read_toml(path)
    tool = data.get("tool", {}) if data is not None else {}
    uv = tool.get("uv", {}) if isinstance(tool, dict) else {}
    uv = uv if isinstance(uv, dict) else {}
    found: list[tuple[str, bool]] = []
    if data is not None:
        for member in workspace_member_dirs(root, read_project(root)):
            if os.path.isfile(os.path.join(member, "pyproject.toml")):
                found.append((os.path.normpath(member), True))
    sources = uv.get("sources", {})
    for source in sources.values() if isinstance(sources, dict) else []:
        if isinstance(source, dict) and isinstance(source.get("path"), str):
            where = os.path.normpath(os.path.join(root, source["path"]))
            if os.path.isdir(where):
                found.append((where, source.get("editable") is True))
    return found


def _locked_sources(root: str, data: dict[str, Any]) -> list[tuple[str, bool]]:
    """(directory, editable) of every local package of the lock ``data`` in ``root``."""
    found: list[tuple[str, bool]] = []
    packages = data.get("package", [])
    for package in packages if isinstance(packages, list) else []:
        source = package.get("source") if isinstance(package, dict) else None
        if not isinstance(source, dict):
            continue
        for kind in ("editable", "directory"):
            where = source.get(kind)
            if isinstance(where, str):
                found.append((os.path.normpath(os.path.join(root, where)), kind == "editable"))
    return found


def digest_env(
    command: list[str], venv: str | None, env: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """The ``FRESHD_DIGEST…`` variables for ``command`` (a uv command or any command
    whose children run uv) and the notes to print, one line each."""
    args = command[1:] if is_uv(command) else []
    root = project_root(args, env)
    path = project_venv(root, venv, env)
    cache = DigestCache(path if os.path.isfile(os.path.join(path, "pyvenv.cfg")) else None)
    no_editable = "--no-editable" in args or _truthy(env.get("UV_NO_EDITABLE"))
    context = f"{root}\0{path}\0{int(no_editable)}"
    answer = cache.answer(context)
    if answer is not None:
        return answer, []
    # what the list of local packages rests on, taken before it is read
    rests_on = quick.inputs(path, os.path.join(root, LOCK)) if cache.path else []
    try:
        packages = local_packages(root, path, cache)
    except FreshdError as exc:
        return {}, [f"{exc}; uv decides by its own timestamps"]
    values: dict[str, list[tuple[str, str]]] = {}
    notes: list[str] = []
    trusted = True
    for source, editable in sorted(packages.items()):
        scope: Scope = "meta" if editable and not no_editable else "tree"
        try:
            digest, names = _package_digest(cache, source, scope)
        except FreshdError as exc:
            names = _declared_names(source)
            digest = f"unverified:{os.getpid()}:{os.urandom(8).hex()}"
            trusted = False
            if names:
                notes.append(f"{source}: {exc}; uv rebuilds it")
        for name in names:
            assert digest is not None
            values.setdefault(name, []).append((source, digest))
        paths = cache.rests_on(source, scope)
        trusted = trusted and paths is not None
        rests_on += paths or []
    if not values:
        notes.append(
            f'no local package of {root} has a {{ env = "FRESHD_DIGEST_…" }} cache key: '
            "uv decides by its own timestamps (docs/uv.md)"
        )
    # a variable shared by several packages holds all their digests: each rebuilds when
    # any of them changes, never misses a change of its own
    found = {name: " ".join(d for _s, d in sorted(v)) for name, v in values.items()}
    cache.save()
    cache.keep_answer(context, rests_on if trusted else [], found if trusted else {})
    return found, notes


def _package_digest(cache: DigestCache, source: str, scope: Scope) -> tuple[str | None, list[str]]:
    """(digest, the variables to fill with it) of the package at ``source``; (None, [])
    when it declares none. FreshdError when it cannot be read."""
    held = cache.held(source, scope)
    if held is not None:
        return held
    from freshd_client.content.project import load_project
    from freshd_client.content.scan import package_dir, scan
    from freshd_client.venvs import verified

    path = package_dir(source)
    entry = cache.entry(source, scope)
    pyproject = lstat_identity(os.path.join(path, "pyproject.toml"))  # before it is read
    project, memo = load_project(path, entry.get("project"))
    if not project.digest_env:
        plain = [["pyproject.toml", pyproject]]
        trusted = (
            pyproject is not None
            and not is_link(pyproject)  # a link's target's edits do not show
            and not racy([pyproject], cache.started)
        )
        cache.keep(source, scope, {"env": [], "paths": plain if trusted else None})
        return None, []
    dirs: list[tuple[str, os.stat_result]] | None = None
    snapshot = None
    members = None
    if scope == "tree":
        dirs = []
        members = _members(entry.get("members"))
    else:
        snapshot, project = verified.meta_snapshot(path, memo)
    result = scan(path, scopes=(scope,), dirs=dirs, project=project, members=members)
    digest = result.tree if scope == "tree" else result.meta
    if result.error is not None or digest is None:
        raise FreshdError(result.error or f"{path}: no {scope} digest")
    made = verified.entry_for(result, digest, INSTALL, dirs=dirs, snapshot=snapshot)
    paths = None if made is None else made["paths"]
    if paths is not None and not any(rel == "pyproject.toml" for rel, _i in paths):
        paths.append(["pyproject.toml", pyproject])  # it names the variables
    kept: dict[str, Any] = {"digest": digest, "env": list(project.digest_env), "paths": paths}
    kept["project"] = memo
    if scope == "tree":
        kept["members"] = {
            r.rel: r.digest.hex() if r.kind in (b"f", b"x") else "" for r in result.records
        }
    cache.keep(source, scope, kept)
    return digest, list(project.digest_env)


def _members(value: object) -> dict[str, bytes] | None:
    """A cached tree's file set as ``scan``'s ``members`` (None when malformed)."""
    if not isinstance(value, dict):
        return None
    try:
        return {str(rel): bytes.fromhex(digest) for rel, digest in value.items()}
    except (TypeError, ValueError):
        return None


def _declared_names(source: str) -> list[str]:
    """The variables a package declares, read plainly (for a package that cannot be
    hashed: it still gets a value, one that makes uv rebuild it)."""
    from freshd_client.content.project import read_project

    try:
        return list(read_project(source).digest_env)
    except (FreshdError, OSError):
        return []
