"""Where freshd keeps its state and its socket by default (``FRESHD_*`` overrides)."""

from __future__ import annotations

import os


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
