"""What freshd reads from a package's project files (pyproject.toml, setup.cfg, setup.py).

Only the keys freshd needs: the project name, uv's cache keys, uv workspace
members, and the ``[tool.freshd]`` include/exclude patterns. setup.py is never run: its
``setup(name="…")`` is read from the syntax tree when no other file names the project.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

from freshd_client.errors import ProjectFileError
from freshd_client.smallfile import read_small

MARKERS = ("pyproject.toml", "setup.py", "setup.cfg")
"""A directory holding any of these is a package."""


class CacheKey(NamedTuple):
    """One entry of ``[tool.uv] cache-keys``: a file/glob, a directory, git state or
    an environment variable."""

    file: str | None = None
    dir: str | None = None
    git_commit: bool = False
    git_tags: bool = False
    env: str | None = None


class Project(NamedTuple):
    """The parts of a package's project files that freshd uses."""

    name: str | None = None
    cache_keys: tuple[CacheKey, ...] | None = None  # None: uv's defaults apply
    ignored_cache_keys: tuple[str, ...] = ()  # entries freshd cannot read (unknown kinds)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    workspace_members: tuple[str, ...] | None = None  # None: not a workspace root
    workspace_exclude: tuple[str, ...] = ()
    digest_env: tuple[str, ...] = ()  # FRESHD_DIGEST_* cache keys: freshd fills them


def normalize_name(name: str) -> str:
    """PEP 503 normalization: runs of ``-_.`` become ``-``, lower case. The one
    definition: project files, installed distributions (``venv``) and lookups by name."""
    import re  # ~1 ms: not on the path of a check that a stat cache answers

    return re.sub(r"[-_.]+", "-", name).lower()


def workspace_member_dirs(root: str, project: Project) -> list[str]:
    """The directories that the workspace at ``root`` names as members (``[tool.uv.workspace]
    members``, less ``exclude``), as its glob patterns select them below ``root`` (whose
    own name may hold glob characters: they are literal), sorted; not ``root`` itself.
    The one expansion, for discovery and for ``freshd run -- uv`` before a lock exists."""
    if project.workspace_members is None:
        return []
    import glob

    def matches(patterns: tuple[str, ...]) -> list[str]:
        base = glob.escape(root)
        return [m for p in patterns for m in glob.glob(os.path.join(base, p))]

    excluded = {os.path.realpath(p) for p in matches(project.workspace_exclude)}
    real_root = os.path.realpath(root)
    return sorted(
        {
            m
            for m in matches(project.workspace_members)
            if (real := os.path.realpath(m)) != real_root and real not in excluded
        }
    )


def is_package_dir(names: set[str] | frozenset[str]) -> bool:
    """Whether a directory listing (its entry names) marks a package."""
    return any(marker in names for marker in MARKERS)


def read_project(directory: str) -> Project:
    """Read the project files of the package at ``directory``.

    Raises ProjectFileError naming the file when pyproject.toml is not valid TOML
    or a freshd-relevant key has the wrong type.
    """
    return _parsed(directory, *_project_files(directory))


def project_or_none(directory: str) -> Project | None:
    """``read_project``, or None when the project files cannot be read: the directory is
    still a package, and its scan reports the error (the one place that decides so, for
    discovery, the engine's rescans and the indexer)."""
    try:
        return read_project(directory)
    except ProjectFileError:
        return None


ProjectFiles = tuple[bytes | None, bytes | None, bytes | None]
"""The bytes of pyproject.toml, setup.cfg and setup.py (None: absent)."""


def _project_files(directory: str) -> ProjectFiles:
    """The bytes of pyproject.toml, setup.cfg and setup.py (None: absent; an unreadable
    setup.cfg or setup.py names nothing either, while its content still counts in
    digests)."""
    pyproject = _read_pyproject(directory)
    optional: list[bytes | None] = []
    for name in ("setup.cfg", "setup.py"):
        try:
            optional.append(read_small(os.path.join(directory, name)))
        except OSError:
            optional.append(None)
    return pyproject, optional[0], optional[1]


def _parsed(
    directory: str, pyproject: bytes | None, setup_cfg: bytes | None, setup_py: bytes | None
) -> Project:
    """``_parse``, answered from the projects parsed last from the same bytes."""
    key = (directory, pyproject, setup_cfg, setup_py)
    project = _PARSED.get(key)
    if project is None:
        project = _parse(directory, pyproject, setup_cfg, setup_py)
        if len(_PARSED) >= _PARSED_MAX:
            del _PARSED[next(iter(_PARSED))]  # the oldest
        _PARSED[key] = project
    return project


_PARSED: dict[tuple[str, bytes | None, bytes | None, bytes | None], Project] = {}
"""Projects by (directory, the bytes of the project files): equal bytes parse
alike, and the daemon reads a package's project at every rescan (~70 µs of TOML for a
small pyproject.toml, a fifth of a one-file rehash)."""
_PARSED_MAX = 512


def load_project(directory: str, memo: object = None) -> tuple[Project, dict[str, Any]]:
    """``read_project``, answered from ``memo`` when the project files still hold the
    bytes it was made from; returns the project and the memo of these bytes.

    The memo (``{"inputs": digest of the project files, "rules": ...}``)
    travels in a stamp's manifest: a container start then skips the TOML parser
    (~10 ms with the ``typing`` it imports), since equal bytes parse alike.
    """
    from blake3 import blake3

    files = _project_files(directory)
    h = blake3(b"freshd-project-inputs-2\0")  # 2: setup.py is one (its name=)
    for raw in files:
        h.update(b"-" if raw is None else b"+%d:" % len(raw) + raw)
    inputs = "b3:" + h.hexdigest()
    if isinstance(memo, dict) and memo.get("inputs") == inputs:
        project = _from_json(memo.get("rules"))
        if project is not None:
            return project, memo
    project = _parsed(directory, *files)
    return project, {"inputs": inputs, "rules": _to_json(project)}


def _read_pyproject(directory: str) -> bytes | None:
    path = os.path.join(directory, "pyproject.toml")
    try:
        return read_small(path)
    except OSError as exc:
        raise ProjectFileError(f"{path}: {exc.strerror or exc}") from exc


def _parse(
    directory: str, raw: bytes | None, setup_cfg: bytes | None, setup_py: bytes | None
) -> Project:
    """The project from the bytes of pyproject.toml, setup.cfg and setup.py (None: absent)."""
    pyproject_path = os.path.join(directory, "pyproject.toml")
    data: dict[str, Any] = {}
    if raw is not None:
        if sys.version_info >= (3, 11):
            import tomllib  # ~10 ms with typing: only where no memo answers
        else:  # pragma: no cover - exercised on 3.10 only
            import tomli as tomllib
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ProjectFileError(f"{pyproject_path}: not valid TOML: {exc}") from exc

    name = (
        _project_name(data, pyproject_path)
        or _setup_cfg_name(setup_cfg)
        or _setup_py_name(setup_py)
    )
    tool = _table(data, "tool", pyproject_path)
    uv = _table(tool, "uv", pyproject_path)
    freshd = _table(tool, "freshd", pyproject_path)
    workspace = uv.get("workspace")
    members: tuple[str, ...] | None = None
    ws_exclude: tuple[str, ...] = ()
    if isinstance(workspace, dict):
        members = _strings(
            workspace.get("members", []), "tool.uv.workspace.members", pyproject_path
        )
        ws_exclude = _strings(
            workspace.get("exclude", []), "tool.uv.workspace.exclude", pyproject_path
        )
    cache_keys, ignored, digest_env = _cache_keys(uv.get("cache-keys"), pyproject_path)
    return Project(
        name=normalize_name(name) if name else None,
        cache_keys=cache_keys,
        ignored_cache_keys=ignored,
        include=_strings(freshd.get("include", []), "tool.freshd.include", pyproject_path),
        exclude=_strings(freshd.get("exclude", []), "tool.freshd.exclude", pyproject_path),
        workspace_members=members,
        workspace_exclude=ws_exclude,
        digest_env=digest_env,
    )


def _to_json(project: Project) -> dict[str, Any]:
    """The project as JSON values (tuples as lists): what a memo stores."""
    rules: dict[str, Any] = {
        k: list(v) if isinstance(v, tuple) else v for k, v in project._asdict().items()
    }
    if project.cache_keys is not None:
        rules["cache_keys"] = [list(k) for k in project.cache_keys]
    return rules


def _from_json(rules: object) -> Project | None:
    """The project a memo holds; None when it is not one this version wrote."""
    if not isinstance(rules, dict) or set(rules) != set(Project._fields):
        return None
    try:
        keys, members = rules["cache_keys"], rules["workspace_members"]
        project = Project(
            name=rules["name"],
            cache_keys=None if keys is None else tuple(CacheKey(*k) for k in keys),
            ignored_cache_keys=tuple(rules["ignored_cache_keys"]),
            include=tuple(rules["include"]),
            exclude=tuple(rules["exclude"]),
            workspace_members=None if members is None else tuple(members),
            workspace_exclude=tuple(rules["workspace_exclude"]),
            digest_env=tuple(rules["digest_env"]),
        )
    except TypeError:
        return None
    # Written by _to_json, it reads back to the same values, of the same types.
    return project if _to_json(project) == rules and _typed(project) else None


def _typed(project: Project) -> bool:
    strings = (
        *project.ignored_cache_keys,
        *project.include,
        *project.exclude,
        *(project.workspace_members or ()),
        *project.workspace_exclude,
        *project.digest_env,
    )
    keys_ok = all(
        isinstance(k.file, (str, type(None)))
        and isinstance(k.dir, (str, type(None)))
        and isinstance(k.git_commit, bool)
        and isinstance(k.git_tags, bool)
        and isinstance(k.env, (str, type(None)))
        for k in project.cache_keys or ()
    )
    name_ok = project.name is None or isinstance(project.name, str)
    return keys_ok and name_ok and all(isinstance(s, str) for s in strings)


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ProjectFileError(f"{where}: '{key}' must be a table, not {type(value).__name__}")
    return value


def _strings(value: object, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProjectFileError(f"{where}: '{key}' must be a list of strings, got {value!r}")
    return tuple(value)


def _project_name(data: dict[str, Any], where: str) -> str | None:
    project = _table(data, "project", where)
    name = project.get("name")
    return name if isinstance(name, str) and name else None


def _setup_cfg_name(raw: bytes | None) -> str | None:
    if not raw:
        return None  # absent (or empty: no name either)
    import configparser  # ~3 ms: only for a package that has a setup.cfg

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(raw.decode("utf-8"))
    except (configparser.Error, UnicodeDecodeError, OSError):
        return None  # setup.cfg is optional metadata; its content still counts in digests
    name = parser.get("metadata", "name", fallback="").strip()
    return name or None


def _setup_py_name(raw: bytes | None) -> str | None:
    """The name a setup.py gives its ``setup()`` call as a string literal, read from the
    syntax tree, never by running it: ``setup(name="x")``, ``setuptools.setup(...)``,
    anywhere in the file (under ``if __name__ == "__main__":``, in a function), and
    ``**dict(name="x")`` or ``**{"name": "x"}``. None when the file does not parse, the
    name is computed (a variable, a call, an f-string, ``**kwargs``), or calls disagree."""
    if not raw:
        return None
    import ast  # ~2 ms: only for a package that has no name in pyproject.toml or setup.cfg

    try:
        tree = ast.parse(raw, "setup.py")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # setup.py is never run: what does not parse names nothing
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_setup(node.func):
            found.update(_names_given(node))
    name = found.pop() if len(found) == 1 else None
    return (name.strip() or None) if name else None


if TYPE_CHECKING:
    import ast


def _is_setup(func: ast.expr) -> bool:
    import ast

    if isinstance(func, ast.Name):
        return func.id == "setup"
    return isinstance(func, ast.Attribute) and func.attr == "setup"


def _names_given(call: ast.Call) -> list[str | None]:
    """The ``name`` of one ``setup()`` call: [] when it gives none, [None] when it cannot
    be told (not a literal, or hidden in ``**kwargs``)."""
    import ast

    given: list[ast.expr] = []
    opaque = False
    for keyword in call.keywords:
        unpacked: ast.expr = keyword.value
        if keyword.arg == "name":
            given.append(unpacked)
        elif keyword.arg is not None:
            continue
        elif isinstance(unpacked, ast.Dict):  # **{"name": "x"}
            for key, value in zip(unpacked.keys, unpacked.values, strict=True):
                opaque = opaque or key is None  # {**other}
                if isinstance(key, ast.Constant) and key.value == "name":
                    given.append(value)
        elif (
            isinstance(unpacked, ast.Call)
            and isinstance(unpacked.func, ast.Name)
            and unpacked.func.id == "dict"
            and not unpacked.args
        ):  # **dict(name="x")
            given.extend(k.value for k in unpacked.keywords if k.arg == "name")
            opaque = opaque or any(k.arg is None for k in unpacked.keywords)
        else:
            opaque = True  # **kwargs
    if not given:
        return [None] if opaque else []
    # a name given twice is a TypeError when setup.py runs: nothing to trust then
    if len(given) == 1 and isinstance(given[0], ast.Constant) and isinstance(given[0].value, str):
        return [given[0].value]
    return [None]


DIGEST_ENV_PREFIX = "FRESHD_DIGEST"
"""``[tool.uv] cache-keys`` entries ``{ env = "FRESHD_DIGEST…" }`` are freshd's: ``freshd
run`` sets them to the package's content digest, which makes uv's own freshness check
compare content (docs/uv.md)."""
DEFAULT_KEYS = (
    CacheKey(file="pyproject.toml"),
    CacheKey(file="setup.py"),
    CacheKey(file="setup.cfg"),
    CacheKey(dir="src"),
)
"""uv's cache keys when a package sets none."""


def _cache_keys(
    value: object, where: str
) -> tuple[tuple[CacheKey, ...] | None, tuple[str, ...], tuple[str, ...]]:
    """(cache keys, entries freshd cannot hash, freshd's digest variables). A freshd
    digest variable replaces uv's timestamps of its default keys, so the meta digest
    that fills it for an editable install covers those keys by content."""
    if value is None:
        return None, (), ()
    if not isinstance(value, list):
        raise ProjectFileError(f"{where}: 'tool.uv.cache-keys' must be a list, got {value!r}")
    keys: list[CacheKey] = []
    ignored: list[str] = []
    digest_env: list[str] = []
    for item in value:
        if isinstance(item, str):  # uv accepts a bare string as a file key
            keys.append(CacheKey(file=item))
        elif isinstance(item, dict) and isinstance(item.get("file"), str):
            keys.append(CacheKey(file=item["file"]))
        elif isinstance(item, dict) and isinstance(item.get("dir"), str):
            keys.append(CacheKey(dir=item["dir"]))
        elif (  # freshd's own: filled with the digest, not an input of it
            isinstance(item, dict)
            and isinstance(item.get("env"), str)
            and item["env"].startswith(DIGEST_ENV_PREFIX)
        ):
            digest_env.append(item["env"])
        elif isinstance(item, dict) and isinstance(item.get("env"), str):
            keys.append(CacheKey(env=item["env"]))
        elif isinstance(item, dict) and "git" in item:
            git = item["git"]
            if git is True:
                keys.append(CacheKey(git_commit=True))
            elif git is False:
                continue
            elif isinstance(git, dict):
                keys.append(
                    CacheKey(git_commit=bool(git.get("commit")), git_tags=bool(git.get("tags")))
                )
            else:
                ignored.append(repr(item))
        else:
            ignored.append(repr(item))
    if digest_env:
        keys.extend(k for k in DEFAULT_KEYS if k not in keys)
    return tuple(keys), tuple(ignored), tuple(dict.fromkeys(digest_env))
