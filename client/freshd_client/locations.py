"""Where freshd keeps its state by default (``FRESHD_HOME`` overrides)."""

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
    """The default LMDB index directory: ``<home>/index``."""
    return os.path.join(home(), "index")
