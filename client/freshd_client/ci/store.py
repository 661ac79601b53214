"""Where task results live: a local directory (``file://``) or S3 (``s3://``).

A store holds immutable objects under ``/``-separated keys. ``put`` is atomic (a
reader sees the whole object or none) and idempotent (two agents writing the same
key leave one whole object). Every failure of the store itself raises StoreError;
``execute`` turns it into a miss.

The default store is ``$FRESHD_CACHE_STORE``, else a directory in the user's cache.
S3 goes through boto3 (the ``s3`` extra), which reads the standard AWS configuration
(credentials, region, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for an
S3-compatible server).
"""

from __future__ import annotations

import os
import re
import tempfile

from freshd_client.errors import StoreError, StoreExtraError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Store(Protocol):
        """The seam between results and where they are kept."""

        url: str

        def get(self, key: str) -> bytes | None:
            """The object at ``key``; None when there is none."""

        def has(self, key: str) -> bool:
            """Whether an object is at ``key``."""

        def put(self, key: str, data: bytes) -> None:
            """Store ``data`` at ``key``, atomically."""


STORE_ENV = "FRESHD_CACHE_STORE"
_KEY = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_TIMEOUT_S = 10  # connect and read: a slow store is a miss, never a hang


def default_url() -> str:
    """``$FRESHD_CACHE_STORE``, else ``file://`` a directory in the user's cache."""
    explicit = os.environ.get(STORE_ENV)
    if explicit:
        return explicit
    import platformdirs

    return "file://" + os.path.join(platformdirs.user_cache_dir("freshd", appauthor=False), "ci")


def open_store(url: str) -> Store:
    """The store a URL names: ``file:///dir`` (or a plain path), ``s3://bucket/prefix``.
    StoreError for another scheme; StoreExtraError when boto3 is missing."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise StoreError(f"store URL {url!r} names no bucket (s3://BUCKET/PREFIX)")
        return S3Store(url, bucket, prefix.strip("/"))
    if url.startswith("file://"):
        path = url[len("file://") :]
    elif "://" in url:
        raise StoreError(f"store URL {url!r}: unknown scheme (file:// or s3://)")
    else:
        path = url
    if not path:
        raise StoreError(f"store URL {url!r} names no directory")
    return FileStore(os.path.abspath(path))


def _checked(key: str) -> str:
    """``key`` when it is a plain relative key (no ``..``, no leading ``/``)."""
    if not _KEY.fullmatch(key) or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"not a store key: {key!r}")
    return key


class FileStore:
    """A directory: a local cache, or a mount several agents share."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.url = "file://" + path

    def get(self, key: str) -> bytes | None:
        try:
            with open(os.path.join(self.path, _checked(key)), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{self.url}: cannot read {key}: {exc.strerror or exc}") from None

    def has(self, key: str) -> bool:
        return os.path.isfile(os.path.join(self.path, _checked(key)))

    def put(self, key: str, data: bytes) -> None:
        path = os.path.join(self.path, _checked(key))
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".put-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)  # atomic: the whole object or the one before
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            raise StoreError(f"{self.url}: cannot write {key}: {exc.strerror or exc}") from None


class S3Store:
    """A bucket and prefix on S3 or an S3-compatible server, through boto3.

    A PUT on S3 is atomic: an object is visible whole or not at all.
    """

    def __init__(self, url: str, bucket: str, prefix: str) -> None:
        self.url = url
        self.bucket = bucket
        self.prefix = prefix
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
        except ModuleNotFoundError as exc:
            raise StoreExtraError(
                f"an s3:// store needs boto3 ({exc.name} is not installed): install 'freshd[s3]'"
            ) from None
        self._errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
        config = botocore.config.Config(
            connect_timeout=_TIMEOUT_S,
            read_timeout=_TIMEOUT_S,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        try:
            self._s3: Any = boto3.client("s3", config=config)
        except self._errors as exc:
            raise StoreError(f"{url}: {exc}") from None

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{_checked(key)}" if self.prefix else _checked(key)

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("NoSuchKey", "404", "NotFound")

    def get(self, key: str) -> bytes | None:
        try:
            answer = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))
            data: bytes = answer["Body"].read()
        except self._errors as exc:
            if self._missing(exc):
                return None
            raise StoreError(f"{self.url}: cannot read {key}: {exc}") from None
        return data

    def has(self, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors as exc:
            if self._missing(exc):
                return False
            raise StoreError(f"{self.url}: cannot look up {key}: {exc}") from None
        return True

    def put(self, key: str, data: bytes) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except self._errors as exc:
            raise StoreError(f"{self.url}: cannot write {key}: {exc}") from None
