"""freshd's thin client: freshness answers, the digest format, the index schema, one-shot digests.

Importing this package stays cheap: it pulls in no web framework, no watcher, and
loads ``Client`` and ``digest_path`` (LMDB, BLAKE3) only when first used.

    from freshd_client import Client
    with Client() as c:
        c.is_fresh("/src/mono/libs/core", "b3t2:9f0c…")   # True / False / None
"""

from __future__ import annotations

from freshd_client.errors import (
    AmbiguousNameError,
    ApiMismatchError,
    DaemonError,
    DaemonNotRunningError,
    DaemonRequestError,
    DigestFormatError,
    FreshdError,
    IndexMissingError,
    IndexStoreError,
    PackagePathError,
    ProjectFileError,
    SchemaMismatchError,
    UnreadableError,
    UnsafePathError,
    UntrustedDaemonError,
    UntrustedIndexError,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~4 ms at start-up)

if TYPE_CHECKING:
    from typing import Any

    from freshd_client.content.oneshot import digest_path
    from freshd_client.spec.digest import Scope
    from freshd_client.transport.client import Client

__version__ = "0.1.0"

__all__ = [
    "AmbiguousNameError",
    "ApiMismatchError",
    "Client",
    "DaemonError",
    "DaemonNotRunningError",
    "DaemonRequestError",
    "DigestFormatError",
    "FreshdError",
    "IndexMissingError",
    "IndexStoreError",
    "PackagePathError",
    "ProjectFileError",
    "SchemaMismatchError",
    "Scope",
    "UnreadableError",
    "UnsafePathError",
    "UntrustedDaemonError",
    "UntrustedIndexError",
    "__version__",
    "digest_path",
]

_LAZY = {
    "Client": "freshd_client.transport.client",
    "Scope": "freshd_client.spec.digest",
    "digest_path": "freshd_client.content.oneshot",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'freshd_client' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
