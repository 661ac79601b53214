"""The freshd digest format, version 2 (specified in docs/digest-spec.md).

A package digest is BLAKE3 over a canonical encoding of sorted entries
(relative POSIX path, kind, 32-byte digest). It depends on content, relative
paths and the executable bit only.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterable
from typing import Literal, NamedTuple

from blake3 import blake3

from freshd_client.errors import DigestFormatError

Scope = Literal["tree", "meta"]
SCOPES: tuple[Scope, ...] = ("tree", "meta")

# Version 2 (issue 19): the same encoding over file sets exactly as git sees them and
# cache keys exactly as uv reads them; a version-1 digest names other entries for the
# same content, so the two are never compared (``parse`` refuses the old prefixes).
FORMAT_VERSION = 2
DIGEST_SIZE = 32
PREFIXES: dict[Scope, str] = {"tree": "b3t2:", "meta": "b3m2:"}

KIND_FILE = b"f"
KIND_EXEC = b"x"
KIND_LINK = b"l"
KIND_DIR = b"d"  # existence of a directory (meta scope only)
KIND_GIT = b"g"  # git state named by a cache key (meta scope only)
KIND_ENV = b"e"  # an environment variable named by a cache key (meta scope only)
KINDS = (KIND_FILE, KIND_EXEC, KIND_LINK, KIND_DIR, KIND_GIT, KIND_ENV)

NO_DIGEST = bytes(DIGEST_SIZE)
_HEADER = b"freshd-digest\x00%d\x00"
_LEN = struct.Struct("<I")
_SMALL_READ = 1 << 20
_CHUNK = 1 << 20


class Entry(NamedTuple):
    """One member of a package digest."""

    path: bytes  # relative POSIX path, raw file-system bytes
    kind: bytes  # one of KINDS
    digest: bytes  # 32 bytes


def kind_of(mode: int) -> bytes:
    """The entry kind of a file-system object with this st_mode (file, exec or link)."""
    if stat.S_ISLNK(mode):
        return KIND_LINK
    return KIND_EXEC if mode & stat.S_IXUSR else KIND_FILE


def encode(entries: Iterable[Entry], scope: Scope) -> bytes:
    """The canonical byte encoding of a package's entries (the BLAKE3 input)."""
    ordered = sorted(entries, key=lambda e: e.path)
    parts = [_header(scope)]
    previous: bytes | None = None
    for entry in ordered:
        if entry.path == previous:
            raise ValueError(f"duplicate entry path {entry.path!r}")
        previous = entry.path
        parts.append(entry_bytes(entry))
    return b"".join(parts)


def _header(scope: Scope) -> bytes:
    return b"%s%s\x00" % (_HEADER % FORMAT_VERSION, scope.encode("ascii"))


def entry_bytes(entry: Entry) -> bytes:
    """One entry's part of the encoding: path length, path, kind, digest."""
    if entry.kind not in KINDS or len(entry.digest) != DIGEST_SIZE:
        raise ValueError(f"malformed entry {entry!r}")
    return _LEN.pack(len(entry.path)) + entry.path + entry.kind + entry.digest


def package_digest(entries: Iterable[Entry], scope: Scope) -> str:
    """The text form (``b3t2:<hex>`` or ``b3m2:<hex>``) of a package digest."""
    return PREFIXES[scope] + blake3(encode(entries, scope)).hexdigest()


def encoded_digest(parts: Iterable[bytes], scope: Scope) -> str:
    """``package_digest`` of entries already encoded by ``entry_bytes``, given in the
    encoding's order (by path bytes, no path twice): the caller keeps that order, which
    lets it re-encode only the entries that changed."""
    hasher = blake3(_header(scope))
    hasher.update(b"".join(parts))
    return PREFIXES[scope] + hasher.hexdigest()


def parse(text: str) -> tuple[Scope, bytes]:
    """Split a digest's text form into its scope and 32 raw bytes; ValueError if malformed,
    DigestFormatError (a ValueError) if it is of another format version."""
    version = format_of(text)
    if version is not None and version != FORMAT_VERSION:
        raise DigestFormatError(
            f"{text[:5]}… is a digest of format {version}, written by another freshd; this "
            f"freshd computes format {FORMAT_VERSION} (docs/digest-spec.md) and never compares "
            "the two: record the digest again (freshd stamp, freshd digest)"
        )
    for scope, prefix in PREFIXES.items():
        if text.startswith(prefix):
            hexpart = text[len(prefix) :]
            if len(hexpart) == 2 * DIGEST_SIZE:
                try:
                    return scope, bytes.fromhex(hexpart)
                except ValueError:
                    break
            break
    raise ValueError(f"not a freshd digest: {text!r} (expected b3t2:<64 hex> or b3m2:<64 hex>)")


def format_of(text: str) -> int | None:
    """The format version a digest's text form names (``b3t1:`` → 1); None when it
    does not look like a freshd digest at all."""
    head, colon, _rest = text.partition(":")
    if not colon or len(head) < 4 or head[:2] != "b3" or head[2] not in "tm":
        return None
    number = head[3:]
    return int(number) if number.isascii() and number.isdigit() and len(number) < 6 else None


def format_raw(scope: Scope, raw: bytes) -> str:
    """The text form of 32 raw digest bytes."""
    return PREFIXES[scope] + raw.hex()


def link_digest(target: bytes) -> bytes:
    """The digest of a symlink: BLAKE3 of its target string."""
    return blake3(target).digest()


def hash_open_file(fd: int, size_hint: int) -> bytes:
    """BLAKE3 of everything readable from fd. A short read means end of file."""
    want = size_hint + 1 if size_hint < _SMALL_READ else _CHUNK
    chunk = os.read(fd, want)
    if len(chunk) < want:
        return blake3(chunk).digest()  # the common case: all of it in one read
    hasher = blake3(chunk)
    while True:
        chunk = os.read(fd, _CHUNK)
        hasher.update(chunk)
        if len(chunk) < _CHUNK:
            return hasher.digest()
