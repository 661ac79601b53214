"""The stat cache of ``freshd run -- uv …``: digests computed before, and what they rest on.

``VENV/.freshd/uvkeys.json`` keeps, for each local package and scope, the digest that
``uvkeys`` computed, the ``FRESHD_DIGEST…`` names its ``pyproject.toml`` declared, and
the lstat identity of everything the digest was computed from (the files and the
directories the walk listed for a tree digest, the cache-key paths for a meta digest;
``pyproject.toml`` is among them both times), taken with the rules of ``verified``:
nothing whose mtime or ctime is within the racy window of the computation is trusted.
While every one of them is unchanged, the digest is taken from here without TOML,
without the gitignore matcher and without hashing. The local sources of ``uv.lock`` are
kept the same way, against the lock's own identity.

When they changed (the first start after a ``COPY``), the package is hashed again, but
the entry still helps: its project rules skip the TOML parser while ``pyproject.toml``
holds the same bytes, and its file set skips the gitignore matcher while the rule files
do (``project.load_project``, ``scan``'s ``members``). A missing, unreadable or
malformed file is an empty cache; a venv that cannot be written to keeps none.
"""

from __future__ import annotations

import os
import time

from freshd_client.spec.identity import holds, lstat_identity, path_line, path_line_holds, racy
from freshd_client.venvs.quick import write_lines
from freshd_client.venvs.venv import freshd_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from freshd_client.spec.digest import Scope

CACHE_FILE = "uvkeys.json"
VERDICT_FILE = "uvkeys.txt"
_HEADER = "freshd-uvkeys 1"
FORMAT = 1
INSTALL = "uvkeys"  # what verified.entry_for records as the install: not a stamp's


class DigestCache:
    """The cache of one venv (or of none: ``venv`` None keeps nothing)."""

    def __init__(self, venv: str | None) -> None:
        self.path = None if venv is None else freshd_file(venv, CACHE_FILE)
        self.started = time.time_ns()
        self._entries: dict[str, Any] | None = None  # read when first needed
        self.changed = False

    @property
    def entries(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = self._load()
        return self._entries

    # -- the whole answer, without JSON -------------------------------------------------

    def answer(self, context: str) -> dict[str, str] | None:
        """The variables last computed in ``context`` (project root, venv, editable
        override) while every path they rest on has the identity it had: a plain-text
        file (``VERDICT_FILE``) that needs no JSON (whose ``re`` costs ~8 ms a start)."""
        if self.path is None:
            return None
        found: dict[str, str] = {}
        try:
            with open(os.path.join(os.path.dirname(self.path), VERDICT_FILE), "rb") as f:
                lines = f.read().decode("ascii").splitlines()
            if lines[:2] != [_HEADER, f"C {context.encode().hex()}"]:
                return None
            for line in lines[2:]:
                tag, *fields = line.split(" ")
                if tag == "P":
                    if not path_line_holds(fields):
                        return None
                elif tag == "V" and len(fields) == 2:
                    found[bytes.fromhex(fields[0]).decode()] = bytes.fromhex(fields[1]).decode()
                else:
                    return None
        except (OSError, ValueError, UnicodeDecodeError):
            return None  # none, malformed, or a path that cannot be examined
        return found or None

    def keep_answer(
        self, context: str, paths: list[tuple[str, list[int] | None]], values: dict[str, str]
    ) -> None:
        """Record ``values`` resting on ``paths`` (taken before they were read), unless
        one was modified within the racy window; otherwise forget any answer kept."""
        if self.path is None:
            return
        target = os.path.join(os.path.dirname(self.path), VERDICT_FILE)
        lines = [_HEADER, f"C {context.encode().hex()}", *(path_line(p, i) for p, i in paths)]
        for name, value in sorted(values.items()):
            lines.append(f"V {name.encode().hex()} {value.encode().hex()}")
        try:
            if racy((i for _p, i in paths), self.started) or not values:
                os.unlink(target)
                return
            os.makedirs(os.path.dirname(target), exist_ok=True)
        except OSError:
            return
        write_lines(target, lines)

    def _load(self) -> dict[str, Any]:
        if self.path is None:
            return {}
        import json

        try:
            with open(self.path, "rb") as f:
                data = json.loads(f.read())
        except (OSError, ValueError):
            return {}
        ok = isinstance(data, dict) and data.get("format") == FORMAT
        entries = data.get("entries") if ok else None
        return entries if isinstance(entries, dict) else {}

    # -- uv.lock ------------------------------------------------------------------------

    def lock_sources(self, lock: str) -> list[tuple[str, bool]] | None:
        """The local sources of ``lock`` as cached, while it is unchanged: by stat, else
        by content (a copied lock: no TOML parser for the same bytes)."""
        entry = self.entries.get("lock")
        if not (isinstance(entry, dict) and entry.get("path") == lock):
            return None
        sources = entry.get("sources")
        ident = lstat_identity(lock)
        if ident is None or not isinstance(sources, list):
            return None
        if entry.get("ident") != ident:
            if _content(lock) != entry.get("digest"):
                return None
            self.keep_lock(lock, ident, sources, entry["digest"])
        try:
            return [(str(s), e is True) for s, e in sources]
        except (TypeError, ValueError):
            return None

    def keep_lock(self, lock: str, ident: list[int] | None, sources: object, digest: str) -> None:
        """Cache ``sources`` of ``lock``, whose bytes have ``digest`` (``lock_digest``),
        read after its lstat was ``ident``; a lock changed within the racy window is
        kept by content only."""
        if racy([ident], self.started):
            ident = None
        self.entries["lock"] = {"path": lock, "ident": ident, "sources": sources, "digest": digest}
        self.changed = True

    # -- packages -----------------------------------------------------------------------

    def entry(self, source: str, scope: Scope) -> dict[str, Any]:
        """The package's entry (empty when there is none)."""
        entry = self.entries.get(f"{scope} {source}")
        return entry if isinstance(entry, dict) else {}

    def rests_on(self, source: str, scope: Scope) -> list[tuple[str, list[int] | None]] | None:
        """The absolute paths and identities the package's entry rests on; None when it
        is not to be trusted by stat."""
        paths = self.entry(source, scope).get("paths")
        if not isinstance(paths, list):
            return None
        try:
            return [(os.path.join(source, rel), ident) for rel, ident in paths]
        except (TypeError, ValueError):
            return None

    def held(self, source: str, scope: Scope) -> tuple[str | None, list[str]] | None:
        """(digest, variable names) of the package while nothing its entry rests on
        changed; None otherwise."""
        entry = self.entry(source, scope)
        paths, names = entry.get("paths"), entry.get("env")
        if not isinstance(paths, list) or not isinstance(names, list):
            return None
        if not holds(paths, source):
            return None
        digest = entry.get("digest")
        if not all(isinstance(n, str) for n in names) or not isinstance(digest, (str, type(None))):
            return None
        return digest, names

    def keep(self, source: str, scope: Scope, value: dict[str, Any]) -> None:
        """Record the package's entry: ``digest``, ``env``, ``paths`` (None: not to be
        trusted by stat), ``project`` (a project memo) and ``members`` (a tree's files)."""
        self.entries[f"{scope} {source}"] = value
        self.changed = True

    def save(self) -> None:
        """Write the cache atomically when it changed; silently nothing when the venv
        cannot be written to."""
        if self.path is None or not self.changed:
            return
        import json

        from freshd_client.content.smallfile import write_atomic

        raw = json.dumps({"format": FORMAT, "entries": self.entries}, separators=(",", ":"))
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_atomic(self.path, raw.encode("utf-8"))
        except OSError:
            return  # the cache is kept another time


def lock_digest(raw: bytes) -> str:
    """The content digest a lock's entry is kept under."""
    from blake3 import blake3

    return "b3:" + blake3(raw).hexdigest()


def _content(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return lock_digest(f.read())
    except OSError:
        return None
