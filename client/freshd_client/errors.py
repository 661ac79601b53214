"""Exceptions raised by freshd_client (and reused by the service).

    FreshdError
    ├── PackagePathError        the path is missing, not a directory, or not a package
    ├── UnreadableError         a file or directory of a package could not be read
    ├── ProjectFileError        pyproject.toml / setup.cfg could not be parsed
    └── IndexStoreError             the LMDB index cannot be used
        ├── SchemaMismatchError     written by another schema version
        └── IndexMissingError       no index at that location

Only the CLI prints these and chooses exit codes; library code raises them.
"""

from __future__ import annotations


class FreshdError(Exception):
    """Base class of every error freshd raises on purpose."""


class PackagePathError(FreshdError):
    """The path given is not a readable package directory."""


class UnreadableError(FreshdError):
    """A file or directory inside a package could not be read."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[UnreadableError], tuple[str, str]]:
        return (type(self), (self.path, self.reason))


class ProjectFileError(FreshdError):
    """A project file (pyproject.toml, setup.cfg) is malformed."""


class IndexStoreError(FreshdError):
    """The LMDB index cannot be opened or used."""


class SchemaMismatchError(IndexStoreError):
    """The index was written with a schema version this code does not read."""


class IndexMissingError(IndexStoreError):
    """There is no index at the given location."""
