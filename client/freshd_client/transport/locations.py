"""Where things are: freshd's state and socket by default (``FRESHD_*`` overrides), a
path a user names, and what a client and the daemon it finds must agree on to talk."""

from __future__ import annotations

import os

from freshd_client.errors import PackagePathError

API_VERSION = 1
"""Version of the daemon's HTTP API and of the ``daemon`` meta record of the index: the
one value both transports (``http``, ``direct``) and the daemon compare."""
API_HEADER = "freshd-api"
"""The HTTP header that carries ``API_VERSION`` in every answer of the daemon."""


def named(path: str) -> str:
    """A path given by a user, as given; PackagePathError for the empty path, which
    ``realpath`` and ``abspath`` make the current directory (an unset ``"$ROOT"``, never
    meant). The one refusal, for every command that takes a package, a root or a venv."""
    if not path:
        raise PackagePathError("an empty path names no directory")
    return path


def real_path(path: str) -> str:
    """``os.path.realpath`` of a path given by a user (``named``: never the empty one)."""
    return os.path.realpath(named(path))


def home() -> str:
    """``$FRESHD_HOME``, else the platform's per-user state directory for freshd."""
    explicit = os.environ.get("FRESHD_HOME")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    import platformdirs  # deferred: only needed when no override is set

    return platformdirs.user_state_dir("freshd", appauthor=False)


def index_dir() -> str:
    """The default LMDB index directory: ``$FRESHD_INDEX``, else ``<home>/index``."""
    explicit = os.environ.get("FRESHD_INDEX")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    return os.path.join(home(), "index")


def socket_path() -> str:
    """The daemon's Unix socket: ``$FRESHD_SOCKET``, else ``$XDG_RUNTIME_DIR/freshd/freshd.sock``,
    else ``<tmp>/freshd-<uid>/freshd.sock`` (the directory is private, mode 0700)."""
    explicit = os.environ.get("FRESHD_SOCKET")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, "freshd", "freshd.sock")
    # $TMPDIR else /tmp, as mktemp(1) does; not tempfile.gettempdir(), which loads shutil,
    # random, bz2 and lzma (~4 ms of every `freshd status` and `freshd run`)
    tmp = os.environ.get("TMPDIR") or "/tmp"  # noqa: S108 - a private 0700 directory in it
    return os.path.join(os.path.abspath(tmp), f"freshd-{os.getuid()}", "freshd.sock")


def token_path(index: str) -> str:
    """The bearer token for ``--tcp`` clients, kept (mode 0600) in the index directory."""
    return os.path.join(index, "token")


def split_host_port(raw: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:7420`` for IPv6) as (host, port); None when it is not one:
    no ``:``, no host, or a port that is not an ASCII number from 0 to 65535. The one
    reading of ``freshd serve --tcp`` and of the HTTP client's ``tcp`` address."""
    host, sep, port = raw.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not (port.isascii() and port.isdigit()) or len(port) > 5:
        return None
    number = int(port)
    return (host, number) if number <= 65535 else None
