"""One-shot digests: no daemon, no index (Docker build stages, CI)."""

from __future__ import annotations

from freshd_client.content.scan import ScanResult, package_dir, scan
from freshd_client.errors import FreshdError
from freshd_client.spec.digest import Scope


def digest_path(path: str, scope: Scope = "tree") -> ScanResult:
    """Scan the package at ``path`` for ``scope``.

    Raises PackagePathError if ``path`` is not a package directory, and
    FreshdError naming the file if part of the package cannot be read.
    """
    result = scan(package_dir(path), scopes=(scope,))
    if result.error is not None:
        raise FreshdError(result.error)
    return result
