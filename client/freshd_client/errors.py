"""Exceptions raised by freshd_client (and reused by the service).

    FreshdError
    ├── PackagePathError        the path is missing, not a directory, or not a package
    ├── UnreadableError         a file or directory of a package could not be read
    ├── ProjectFileError        pyproject.toml / setup.cfg could not be parsed
    ├── DigestFormatError       a digest of another format version (also a ValueError)
    ├── IndexStoreError             the LMDB index cannot be used
    │   ├── SchemaMismatchError     written by another schema version
    │   ├── IndexMissingError       no index at that location
    │   └── UntrustedIndexError     the index directory is another user's, or others can write to it
    ├── AmbiguousNameError      a project name matches several packages
    ├── UnsafePathError         a directory or file freshd relies on is not private to this user
    └── DaemonError                 talking to the daemon failed
        ├── DaemonNotRunningError   nothing answers on the socket (or TCP address)
        ├── ApiMismatchError        the daemon speaks another API version
        ├── DaemonRequestError      the daemon refused a request (its error code and message)
        └── UntrustedDaemonError    the process answering runs as another user, or cannot be checked

    FreshdError (freshd_client.ci: CI agents sharing task results, issue 23)
    └── CiError
        ├── GraphError              the local dependency graph cannot be built
        │   ├── DependencyCycleError    local packages depend on each other in a cycle
        │   └── MissingDependencyError  a local dependency names no local package
        ├── RecordError             a stored result refused: malformed, unsigned, tampered, unsafe
        └── StoreError              a result store cannot be used (bad URL, unreachable, refused)
            └── StoreExtraError     the store needs an extra that is not installed (boto3)

Only the CLI prints these and chooses exit codes; library code raises them.
"""

from __future__ import annotations


class FreshdError(Exception):
    """Base class of every error freshd raises on purpose."""


class PackagePathError(FreshdError):
    """The path given is not a readable package directory."""


class DigestFormatError(FreshdError, ValueError):
    """A digest whose text form names another format version: never compared."""


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


class UntrustedIndexError(IndexStoreError):
    """The index directory belongs to another user or other users can write to it: its
    records could claim anything is fresh (docs/security.md)."""


class AmbiguousNameError(FreshdError):
    """A project name given to a lookup belongs to more than one package."""


class UnsafePathError(FreshdError):
    """A directory or file freshd relies on (the socket's directory, the token) is a
    symlink, another user's, or open to other users (docs/security.md)."""


class DaemonError(FreshdError):
    """The daemon could not be reached or did not answer properly."""


class DaemonNotRunningError(DaemonError):
    """No daemon listens at the address; the message names it and how to start one."""

    def __init__(self, address: str) -> None:
        super().__init__(f"no freshd daemon at {address} (start it with: freshd serve)")
        self.address = address

    def __reduce__(self) -> tuple[type[DaemonNotRunningError], tuple[str]]:
        return (type(self), (self.address,))


class ApiMismatchError(DaemonError):
    """The daemon speaks an HTTP API version this client does not."""


class DaemonRequestError(DaemonError):
    """The daemon answered a request with ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def __reduce__(self) -> tuple[type[DaemonRequestError], tuple[int, str, str]]:
        return (type(self), (self.status, self.code, str(self)))


class UntrustedDaemonError(DaemonError):
    """The process serving the socket runs as another user, or its user cannot be
    verified: none of its answers is believed (docs/security.md)."""


# -- freshd_client.ci (issue 23): one block, kept together -------------------------------


class CiError(FreshdError):
    """Base of the errors of ``freshd graph``, ``affected`` and ``exec``."""


class GraphError(CiError):
    """The local dependency graph cannot be built from the project files."""


class DependencyCycleError(GraphError):
    """Local packages depend on each other in a cycle (the message names it)."""


class MissingDependencyError(GraphError):
    """A local dependency (a path or workspace source) names no local package."""


class RecordError(CiError):
    """A stored result that must not be replayed: malformed, unsigned or wrongly signed
    while ``FRESHD_CACHE_KEY`` is set, a blob that does not match its SHA-256, or an
    output path that could leave its package. A refused record is a miss."""


class StoreError(CiError):
    """A result store cannot be used: a bad URL, or it is unreachable or refused a request."""


class StoreExtraError(StoreError):
    """The store needs an optional dependency that is not installed (``freshd[s3]``)."""
