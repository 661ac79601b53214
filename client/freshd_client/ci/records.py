"""Result records: one success of a task for one closure digest, and what it produced.

Layout in a store::

    blobs/sha256/<hex>                 a log or an output file, addressed by its SHA-256
    records/<task>/<closure>.json      the record naming them, written last

Blobs are uploaded once (an existing one is not written again) and the record only after
every blob it names, so a partial upload is never a hit. With a key in
``FRESHD_CACHE_KEY`` records are signed (HMAC-SHA256 over the record's canonical JSON
without its ``sig``), and a record with a missing or wrong signature is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re

from freshd_client.errors import CiError, RecordError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from freshd_client.ci.store import Store

KEY_ENV = "FRESHD_CACHE_KEY"
FORMAT = 1
_TASK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Output:
    """One output file of a record: its path relative to the package, SHA-256 and mode."""

    __slots__ = ("executable", "path", "sha256")

    def __init__(self, path: str, sha256: str, executable: bool) -> None:
        self.path = path
        self.sha256 = sha256
        self.executable = executable


class Record:
    """A success of ``task`` on ``package`` for ``closure``: its log and outputs."""

    def __init__(
        self, task: str, closure: str, package: str, log: str, outputs: list[Output]
    ) -> None:
        self.task = task
        self.closure = closure
        self.package = package
        self.log = log  # SHA-256 of the log blob
        self.outputs = outputs

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "task": self.task,
            "closure": self.closure,
            "package": self.package,
            "log": self.log,
            "outputs": [
                {"path": o.path, "sha256": o.sha256, "executable": o.executable}
                for o in self.outputs
            ],
        }


def check_task(task: str) -> str:
    """``task`` when it can name records (letters, digits, ``._-``); CiError otherwise."""
    if not _TASK.fullmatch(task):
        raise CiError(f"task name {task!r}: use letters, digits, '.', '_' and '-' only")
    return task


def record_key(task: str, closure: str) -> str:
    return f"records/{check_task(task)}/{closure.replace(':', '-')}.json"


def blob_key(sha256: str) -> str:
    return f"blobs/sha256/{sha256}"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signing_key() -> bytes | None:
    """The signing key from ``FRESHD_CACHE_KEY``; None when unset or empty."""
    raw = os.environ.get(KEY_ENV, "")
    return raw.encode() if raw else None


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _signature(body: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()


def encode(record: Record, key: bytes | None) -> bytes:
    """The stored form of ``record``, signed when there is a key."""
    body = record.body()
    if key is not None:
        body["sig"] = "hmac-sha256:" + _signature(body, key)
    return json.dumps(body, sort_keys=True, indent=1).encode() + b"\n"


def decode(raw: bytes, task: str, closure: str, key: bytes | None) -> Record:
    """The record stored as ``raw`` for ``task`` and ``closure``; RecordError when it is
    malformed, for another key, unsigned or wrongly signed (with a key), or names an
    output path that could leave its package."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise RecordError("not a JSON record") from None
    if not isinstance(body, dict):
        raise RecordError("not a JSON record")
    sig = body.pop("sig", None)
    if key is not None:
        if not isinstance(sig, str):
            raise RecordError(f"unsigned record, and {KEY_ENV} is set")
        expected = "hmac-sha256:" + _signature(body, key)
        if not hmac.compare_digest(sig, expected):
            raise RecordError("wrong signature (tampered, or signed with another key)")
    try:
        outputs = [Output(o["path"], o["sha256"], o["executable"]) for o in body["outputs"] or []]
        record = Record(body["task"], body["closure"], body["package"], body["log"], outputs)
        fields_ok = body["format"] == FORMAT and record.body() == body
    except (KeyError, TypeError):
        raise RecordError("malformed record") from None
    if not fields_ok or record.task != task or record.closure != closure:
        raise RecordError("a record of another format, task or closure")
    for sha in (record.log, *(o.sha256 for o in outputs)):
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise RecordError(f"not a SHA-256: {sha!r}")
    for output in outputs:
        safe_relative(output.path)
    return record


def safe_relative(path: object) -> str:
    """``path`` when it is a relative ``/``-separated path that stays inside the
    directory it is joined to (no ``..``, ``.``, empty or absolute part); RecordError."""
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path:
        raise RecordError(f"output path {path!r} is not a relative path")
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise RecordError(f"output path {path!r} could leave the package directory")
    return path


def save(store: Store, record: Record, blobs: dict[str, bytes], key: bytes | None) -> None:
    """Upload the blobs the store lacks, then the record: a reader never sees a record
    whose blobs are not all there. StoreError when the store fails."""
    for sha, data in blobs.items():
        if not store.has(blob_key(sha)):
            store.put(blob_key(sha), data)
    store.put(record_key(record.task, record.closure), encode(record, key))


def fetch_blob(store: Store, sha: str) -> bytes:
    """The blob of SHA-256 ``sha``; RecordError when it is missing or its content does not
    have that SHA-256 (a tampered or truncated blob)."""
    data = store.get(blob_key(sha))
    if data is None:
        raise RecordError(f"blob {sha[:12]} is missing from the store")
    if sha256_of(data) != sha:
        raise RecordError(f"blob {sha[:12]} does not match its SHA-256 (tampered or truncated)")
    return data
