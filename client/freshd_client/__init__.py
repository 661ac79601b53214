"""freshd's thin client: the digest format, the index schema and one-shot digests.

Importing this package stays cheap: it pulls in no web framework, no watcher.
"""

from __future__ import annotations

from freshd_client.digest import Scope
from freshd_client.errors import (
    FreshdError,
    IndexMissingError,
    IndexStoreError,
    PackagePathError,
    ProjectFileError,
    SchemaMismatchError,
    UnreadableError,
)
from freshd_client.oneshot import digest_path

__version__ = "0.1.0"

__all__ = [
    "FreshdError",
    "IndexMissingError",
    "IndexStoreError",
    "PackagePathError",
    "ProjectFileError",
    "SchemaMismatchError",
    "Scope",
    "UnreadableError",
    "__version__",
    "digest_path",
]
