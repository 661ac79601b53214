"""Local installs of a virtual environment, found through PEP 610 ``direct_url.json``.

A distribution installed from a local directory (``uv sync`` of a path or workspace
dependency, ``pip install ./lib``, ``pip install -e .``) carries in its ``.dist-info``
a ``direct_url.json`` with a ``file://`` URL and a ``dir_info`` object; ``editable``
in it tells an editable install from a regular one. Environments made by uv, pip,
virtualenv and ``python -m venv`` all record it the same way. Installs that predate
PEP 610 (``setup.py develop`` egg-links) carry none and are not found.

This module reads files only: no LMDB, no hashing. ``freshd check`` and ``freshd run``
start with it on every container start.
"""

from __future__ import annotations

import os

from freshd_client.errors import VenvError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from freshd_client.spec.digest import Scope


STAMP_DIR = ".freshd"
"""The directory inside a venv that holds freshd's records of it: the stamps and their
manifests (``stamps``) and the stat caches (``verified``, ``quick``, ``uvcache``)."""
STAMP_FILE = "stamps.json"


def freshd_file(venv: str, name: str) -> str:
    """The path of freshd's file ``name`` in ``venv`` (in ``STAMP_DIR``)."""
    return os.path.join(venv, STAMP_DIR, name)


class LocalInstall:
    """One distribution of a venv installed from a local directory."""

    __slots__ = ("dist_info", "editable", "name", "source", "version")

    def __init__(
        self, name: str, version: str, source: str, editable: bool, dist_info: str
    ) -> None:
        self.name = name  # normalized (PEP 503)
        self.version = version
        self.source = source  # absolute path of the source directory, as recorded
        self.editable = editable
        self.dist_info = dist_info  # absolute path of its .dist-info directory

    @property
    def scope(self) -> Scope:
        """What the install depends on: ``meta`` (build inputs) when editable, else ``tree``."""
        return "meta" if self.editable else "tree"

    def __repr__(self) -> str:
        kind = "editable" if self.editable else "regular"
        return f"LocalInstall({self.name} {self.version}, {kind}, {self.source})"


def venv_dir(venv: str | None) -> str:
    """The venv to use: ``venv``, else ``$VIRTUAL_ENV``, else ``./.venv``; absolute.

    VenvError when it is not a virtual environment (no ``pyvenv.cfg``).
    """
    from freshd_client.transport.locations import named

    chosen = named(venv) if venv is not None else os.environ.get("VIRTUAL_ENV") or ".venv"
    path = os.path.abspath(chosen)
    if not os.path.isdir(path):
        raise VenvError(f"{chosen}: no such virtual environment (give one with --venv)")
    if not os.path.isfile(os.path.join(path, "pyvenv.cfg")):
        raise VenvError(f"{chosen}: not a virtual environment (no pyvenv.cfg)")
    return path


def site_packages(venv: str) -> list[str]:
    """The venv's site-packages directories (POSIX ``lib*/python*/``, Windows ``Lib``)."""
    found: list[str] = []
    for lib in ("lib", "lib64"):
        base = os.path.join(venv, lib)
        try:
            names = sorted(os.listdir(base))
        except OSError:
            continue
        for name in names:
            candidate = os.path.join(base, name, "site-packages")
            if name.startswith(("python", "pypy")) and os.path.isdir(candidate):
                real = os.path.realpath(candidate)
                if real not in (os.path.realpath(f) for f in found):
                    found.append(candidate)
    windows = os.path.join(venv, "Lib", "site-packages")
    if os.path.isdir(windows):
        found.append(windows)
    return found


def local_installs(venv: str) -> list[LocalInstall]:
    """Every distribution in ``venv`` installed from a local directory, by name."""
    installs: dict[str, LocalInstall] = {}
    for directory in site_packages(venv):
        try:
            names = os.listdir(directory)
        except OSError as exc:
            raise VenvError(f"cannot read {directory}: {exc.strerror or exc}") from None
        for entry in names:
            if not entry.endswith(".dist-info"):
                continue
            dist_info = os.path.join(directory, entry)
            install = read_install(dist_info)
            if install is not None:
                installs.setdefault(install.name, install)
    return sorted(installs.values(), key=lambda i: i.name)


def read_install(dist_info: str) -> LocalInstall | None:
    """The local install recorded in ``dist_info``; None if it was not installed from a
    local directory. VenvError naming the file if its ``direct_url.json`` is malformed."""
    record = os.path.join(dist_info, "direct_url.json")
    data = read_json(record, "PEP 610 record")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise VenvError(f"{record}: unreadable PEP 610 record (not a JSON object)")
    url, dir_info = data.get("url"), data.get("dir_info")
    if not isinstance(url, str) or not isinstance(dir_info, dict):
        return None  # a VCS or archive URL: not a local directory
    source = file_url_path(url)
    if source is None:
        return None
    name, version = _name_version(dist_info)
    return LocalInstall(name, version, source, dir_info.get("editable") is True, dist_info)


def read_json(path: str, what: str) -> object | None:
    """The JSON document at ``path``; None when there is no such file, VenvError naming
    the file and ``what`` it is when it cannot be read or parsed."""
    import json  # not at module level: the whole-venv fast path reads no JSON

    try:
        with open(path, "rb") as f:
            data: object = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise VenvError(f"{path}: unreadable {what} ({exc})") from None
    return data


def file_url_path(url: str) -> str | None:
    """The absolute local path of a ``file:`` URL (percent-decoded), else None."""
    scheme, sep, rest = url.partition(":")
    if scheme.lower() != "file" or not sep:
        return None
    if rest.startswith("//"):
        host, slash, rest = rest[2:].partition("/")
        if host not in ("", "localhost"):
            return None  # a file on another host
        rest = slash + rest
    path = rest.partition("?")[0].partition("#")[0]
    if "%" in path:
        from urllib.parse import unquote  # ~2 ms: only for a path that needs it

        path = unquote(path, errors="surrogateescape")
    if os.name == "nt" and path[:1] == "/" and path[2:3] == ":":
        path = path[1:]  # file:///C:/src → C:/src
    return os.path.normpath(path) if os.path.isabs(path) else None


def _name_version(dist_info: str) -> tuple[str, str]:
    """Name and version from METADATA's headers; the directory name when it has none."""
    name = version = ""
    try:
        with open(os.path.join(dist_info, "METADATA"), encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # end of the headers
                key, _, value = line.partition(":")
                if key == "Name" and not name:
                    name = value.strip()
                elif key == "Version" and not version:
                    version = value.strip()
    except OSError:
        pass
    if not name or not version:
        stem = os.path.basename(dist_info)[: -len(".dist-info")]
        dir_name, _, dir_version = stem.partition("-")
        name, version = name or dir_name, version or dir_version
    from freshd_client.content.project import (
        normalize_name,  # its namedtuples: not on the fast path
    )

    return normalize_name(name), version
